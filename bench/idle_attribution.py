#!/usr/bin/env python3
"""Where a box's idle time comes from, from a `perf sched record -g -a` trace (issue 19).

Idle CPU time under a closed-loop load means every in-flight request was parked behind a
thread that was not running. This replays the trace's context switches and wake-ups and says:

1. how long 0, 1, … CPUs were idle at once, and the box's idle share;
2. while some CPUs were idle, which threads were the only ones running (a serial stage shows up
   here: when every request waits on one thread, that thread runs alone);
3. what ended each period in which every CPU was idle (on the loopback nothing arrives unless
   something runs, so such a period ends with an interrupt: a timer, or a disk's completion);
4. for the threads named on the command line, the share of the window each spent running,
   runnable but waiting for a CPU, and blocked, and why they were blocked (state and the kernel
   frames under `schedule`), summed;
5. how long threads waited runnable for a CPU (from their wake-up, or from being preempted, to
   running again), per thread name: the run-queue waits behind a latency tail on a full box.

Usage: perf script -i sched.data -F comm,tid,cpu,time,event,trace,ip,sym > sched.txt
       bench/idle_attribution.py sched.txt [thread-name …]
(bench/idle-profile.sh records and runs this in one step.)
"""

import collections
import re
import sys

HEADER = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
SWITCH = re.compile(
    r"prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)"
)
WAKING = re.compile(r"comm=(.*) pid=(\d+) prio")
# Frames every blocked or woken stack shares; the ones under them say why.
SCHEDULER_FRAMES = {
    "__schedule", "schedule", "schedule_hrtimeout_range_clock", "schedule_hrtimeout_range",
    "schedule_timeout", "preempt_schedule_common", "__cond_resched", "io_schedule",
    "__schedule_loop",
}
WAKE_FRAMES = {
    "try_to_wake_up", "wake_up_process", "wake_up_q", "__wake_up_common", "default_wake_function",
    "autoremove_wake_function", "__wake_up_common_lock", "pollwake", "ep_autoremove_wake_function",
    "__wake_up", "__wake_up_sync_key",
}


def read_events(path):
    """The trace's switch and waking events, in time order, each with its kernel call chain."""
    events, current = [], None
    with open(path, errors="replace") as trace:
        for line in trace:
            header = HEADER.match(line)
            if header is None:
                if current is not None:
                    frame = line.strip().split(None, 1)
                    if len(frame) == 2:
                        current["chain"].append(frame[1])
                continue
            comm, tid, cpu, time, event, detail = header.groups()
            current = None
            if event in ("sched:sched_switch", "sched:sched_waking"):
                current = dict(comm=comm, cpu=int(cpu), time=float(time), event=event,
                               detail=detail, chain=[])
                events.append(current)
    events.sort(key=lambda e: e["time"])
    return events


def why_blocked(chain, state):
    """The blocked state and the first three kernel frames under the scheduler's own."""
    frames = [f for f in chain if f not in SCHEDULER_FRAMES][:3]
    return f"{state}:{'<'.join(frames)}"


def attribute(events, cpus):
    """Replays the events; returns the tallies the report prints."""
    running = {cpu: None for cpu in range(cpus)}  # None until seen, "idle", or a thread's comm
    idle_at_once = collections.Counter()  # number of idle CPUs -> seconds
    running_alone = collections.Counter()  # comm -> seconds it ran while another CPU idled
    ended_by = collections.Counter()  # what woke the box from all-idle -> count
    ended_after = collections.Counter()  # … -> seconds of all-idle before it
    off_cpu = collections.defaultdict(collections.Counter)  # comm -> reason -> seconds
    blocked = {}  # tid -> (since, reason, comm)
    thread_state = {}  # tid -> (comm, "running" | "runnable" | "blocked", since)
    time_in_state = collections.defaultdict(collections.Counter)  # comm -> state -> seconds
    run_queue_waits = collections.defaultdict(list)  # comm -> seconds each wait lasted
    all_idle_since = None

    def enter(tid, comm, state, now):
        """Closes the thread's current state at `now` and opens the given one; a runnable
        thread that starts running ends a run-queue wait."""
        if tid in thread_state:
            old_comm, old_state, since = thread_state[tid]
            time_in_state[old_comm][old_state] += now - since
            if old_state == "runnable" and state == "running":
                run_queue_waits[comm].append(now - since)
        thread_state[tid] = (comm, state, now)

    last = events[0]["time"]
    for event in events:
        now = event["time"]
        if all(state is not None for state in running.values()):
            idle = sum(1 for state in running.values() if state == "idle")
            idle_at_once[idle] += now - last
            if 0 < idle < cpus:
                for state in running.values():
                    if state != "idle":
                        running_alone[state] += now - last
        last = now
        if event["event"] == "sched:sched_switch":
            switch = SWITCH.search(event["detail"])
            if switch is None:
                continue
            prev_comm, prev_tid, prev_state, next_comm, next_tid = switch.groups()
            prev_tid, next_tid = int(prev_tid), int(next_tid)
            running[event["cpu"]] = "idle" if next_tid == 0 else next_comm
            if prev_tid != 0:
                enter(prev_tid, prev_comm,
                      "runnable" if prev_state.startswith("R") else "blocked", now)
            if next_tid != 0:
                enter(next_tid, next_comm, "running", now)
            if prev_tid != 0 and not prev_state.startswith("R"):
                blocked[prev_tid] = (now, why_blocked(event["chain"], prev_state), prev_comm)
            if next_tid in blocked:
                since, reason, comm = blocked.pop(next_tid)
                off_cpu[comm][reason] += now - since
            everything_idle = all(state == "idle" for state in running.values())
            if everything_idle and all_idle_since is None:
                all_idle_since = now
            elif not everything_idle:
                all_idle_since = None
        else:
            waking = WAKING.search(event["detail"])
            if waking is not None:
                wakee_tid = int(waking.group(2))
                if thread_state.get(wakee_tid, (None, None, None))[1] == "blocked":
                    enter(wakee_tid, waking.group(1), "runnable", now)
            if all_idle_since is None:
                continue
            wakee = waking.group(1) if waking else "?"
            frames = [f for f in event["chain"] if f not in WAKE_FRAMES][:4]
            key = f"{wakee} <= {'<'.join(frames)}"
            ended_by[key] += 1
            ended_after[key] += now - all_idle_since
            all_idle_since = None  # only the first wake-up ends the period
    window = events[-1]["time"] - events[0]["time"]
    threads = collections.Counter(comm for comm, _, _ in thread_state.values())
    return (window, idle_at_once, running_alone, ended_by, ended_after, off_cpu,
            run_queue_waits, time_in_state, threads)


def percentile(sorted_values, fraction):
    """The value below which the given fraction of the sorted values lie."""
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    events = read_events(sys.argv[1])
    if not events:
        sys.exit("no sched_switch/sched_waking events in the trace")
    cpus = max(e["cpu"] for e in events) + 1
    (window, idle_at_once, running_alone, ended_by, ended_after, off_cpu,
     run_queue_waits, time_in_state, threads) = attribute(events, cpus)
    print(f"window {window:.3f} s on {cpus} CPUs")
    for idle in sorted(idle_at_once):
        share = 100 * idle_at_once[idle] / window
        print(f"  {idle} CPU(s) idle at once: {idle_at_once[idle]:.3f} s ({share:.1f} %)")
    idle_cpu_seconds = sum(n * s for n, s in idle_at_once.items())
    print(f"idle share of the box: {100 * idle_cpu_seconds / (cpus * window):.1f} %")
    print("threads running while another CPU idled (ms):")
    for comm, seconds in running_alone.most_common(8):
        print(f"  {seconds * 1000:9.1f}  {comm}")
    print("what ended a period with every CPU idle (count, ms idle before it, wakee <= waker):")
    for key, count in ended_by.most_common(10):
        print(f"  {count:6d} {ended_after[key] * 1000:9.1f}  {key}")
    for comm in sys.argv[2:]:
        seen = sum(time_in_state[comm].values()) or 1
        shares = ", ".join(f"{state} {100 * time_in_state[comm][state] / seen:.0f} %"
                           for state in ("running", "runnable", "blocked"))
        print(f"{comm} ({threads[comm]} thread(s)): {shares} of the time seen")
        print(f"off the CPU, {comm} (ms, state:kernel frames):")
        for reason, seconds in off_cpu[comm].most_common(6):
            print(f"  {seconds * 1000:9.1f}  {reason}")
    print("waiting runnable for a CPU, by thread name (count, p50 / p99 / max ms, total ms):")
    busiest = sorted(run_queue_waits.items(), key=lambda item: -sum(item[1]))[:10]
    for comm, waits in busiest:
        waits.sort()
        print(f"  {len(waits):7d}  {percentile(waits, 0.5) * 1000:6.2f} / "
              f"{percentile(waits, 0.99) * 1000:6.2f} / {waits[-1] * 1000:6.2f}  "
              f"{sum(waits) * 1000:9.1f}  {comm}")


if __name__ == "__main__":
    main()
