#!/usr/bin/env python3
"""A merchant backend against paygate, standard library only (Python 3.8+).

It does what a shop's server does, end to end:

1. receives paygate's webhooks on its own HTTP endpoint and verifies `Paygate-Signature`
   (HMAC-SHA256 over "<t>.<raw body>", timestamp within 5 minutes) before trusting a byte;
2. creates orders through the API: a WeChat NATIVE order (QR code on a PC page), a WeChat
   mini-program order on the APIv3 app with the buyer's openid from `wx.login`, and an
   Alipay APP order whose `order_string` goes to the Alipay SDK;
3. plays the buyer in paygate's sandbox (in production the buyer pays in WeChat or Alipay);
4. fulfils an order only on a verified `order.paid` webhook (or by reading the order), never
   on what the buyer's client says;
5. refunds each order and waits for `refund.succeeded`.

Configuration (environment):
  PAYGATE_BASE            the gateway, e.g. http://127.0.0.1:8080
  PAYGATE_KEY             a merchant API key (pgm_…)
  PAYGATE_SANDBOX         the sandbox URL `paygate serve` prints (only to play the buyer)
  PAYGATE_WEBHOOK_SECRET  the secret of this receiver's `[[webhooks.endpoints.APP]]`
  WEBHOOK_LISTEN          where to receive webhooks, default 127.0.0.1:9101

Exits 0 when every order was paid, its webhook verified, and refunded.
"""

import hashlib
import hmac
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE = os.environ.get("PAYGATE_BASE", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ["PAYGATE_KEY"]
SANDBOX = os.environ.get("PAYGATE_SANDBOX", "").rstrip("/")
SECRET = os.environ["PAYGATE_WEBHOOK_SECRET"].encode()
LISTEN = os.environ.get("WEBHOOK_LISTEN", "127.0.0.1:9101")
TOLERANCE_SECONDS = 300


# --- 1. Webhooks: verify, de-duplicate, then act -------------------------------------------


def verify_paygate_signature(secret, header, body, now=None, tolerance=TOLERANCE_SECONDS):
    """True when `header` (Paygate-Signature) signs the raw `body` with `secret`, recently."""
    items = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    timestamp = next((value for key, value in items if key == "t"), None)
    if timestamp is None or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        return False  # a replay of an old delivery, or a clock far off
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in items if key == "v1")


events = queue.Queue()  # verified events, for the main flow to wait on
seen_event_ids = set()  # delivery is at least once: a repeat is acknowledged and ignored
seen_lock = threading.Lock()


class WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            self.send_response(413)
            self.end_headers()
            return
        body = self.rfile.read(length)  # the raw bytes: verify before parsing
        if not verify_paygate_signature(SECRET, self.headers.get("Paygate-Signature", ""), body):
            self.send_response(400)
            self.end_headers()
            return
        event = json.loads(body)
        with seen_lock:
            repeat = event["id"] in seen_event_ids
            seen_event_ids.add(event["id"])
        if not repeat:
            events.put(event)  # real code queues the work (fulfil, notify the buyer) here
        self.send_response(204)  # any 2xx acknowledges; answer fast
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for_event(event_type, out_trade_no, timeout=30):
    """The verified event of `event_type` for `out_trade_no`; others stay queued for later."""
    deadline = time.time() + timeout
    held = []
    try:
        while time.time() < deadline:
            try:
                event = events.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                break
            data = event["data"]
            if event["type"] == event_type and data.get("out_trade_no") == out_trade_no:
                return event
            held.append(event)
    finally:
        for event in held:
            events.put(event)
    raise RuntimeError(f"no verified {event_type} webhook for {out_trade_no} in {timeout}s")


# --- 2. The paygate API --------------------------------------------------------------------


class PaygateError(Exception):
    """An API error: `code` is stable (docs/api.md lists every one), `status` the HTTP status."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


def call(method, url, body=None, key=KEY):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        payload = json.loads(error.read() or b"{}")
        detail = payload.get("error", {})
        if isinstance(detail, dict):
            raise PaygateError(error.code, detail.get("code"), detail.get("message")) from None
        raise PaygateError(error.code, None, detail) from None


def create_order(**fields):
    """POST /v1/orders. Retrying with the same out_trade_no and body is safe (same order)."""
    return call("POST", f"{BASE}/v1/orders", fields)


def get_order(order_id):
    return call("GET", f"{BASE}/v1/orders/{order_id}")


def refund(order_id, amount, out_refund_no):
    """POST /v1/orders/{id}/refunds; out_refund_no makes a retry the same refund."""
    body = {"amount": amount, "reason": "example refund", "out_refund_no": out_refund_no}
    return call("POST", f"{BASE}/v1/orders/{order_id}/refunds", body)


# --- 3. The buyer, played in the sandbox ---------------------------------------------------


def sandbox_pay(body):
    """POST /sandbox/pay (docs/sandbox.md): what the buyer's WeChat or Alipay would do."""
    return call("POST", f"{SANDBOX}/sandbox/pay", body, key=None)


def pay_as_buyer(order):
    params = order["pay_params"]
    kind = params["type"]
    if kind == "alipay_order_string":
        # The app hands order_string to the Alipay SDK; the sandbox plays that SDK.
        return sandbox_pay({"order_string": params["order_string"]})
    if kind == "wechat_jsapi":
        # wx.requestPayment carries package "prepay_id=…".
        return sandbox_pay({"prepay_id": params["package"].split("=", 1)[1]})
    # NATIVE (code_url scanned by the buyer) and the rest: by provider and out_trade_no.
    return sandbox_pay({"provider": order["provider"], "out_trade_no": order["out_trade_no"]})


# --- 4. The whole flow ---------------------------------------------------------------------


def main():
    host, port = LISTEN.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), WebhookHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # Self-checks of the verifier: a tampered body and a stale timestamp are refused.
    body = b'{"id":"x"}'
    now = int(time.time())
    good = hmac.new(SECRET, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify_paygate_signature(SECRET, f"t={now},v1={good}", body)
    assert not verify_paygate_signature(SECRET, f"t={now},v1={good}", body + b" ")
    assert not verify_paygate_signature(SECRET, f"t={now - 3600},v1={good}", body)

    run = f"py{int(time.time() * 1000) % 10**10}"
    # A mini-program buyer: wx.login() gives a code; our backend exchanges it for the openid.
    openid = call("POST", f"{BASE}/v1/wechat/sandbox-v3/login", {"code": f"{run}-login"})["openid"]
    orders = [
        dict(provider="wechat", channel="native", amount=990, subject="Oolong tea",
             client_ip="203.0.113.7"),
        dict(provider="wechat", app="sandbox-v3", channel="mini_program", amount=1200,
             subject="Green tea", openid=openid, client_ip="203.0.113.7"),
        dict(provider="alipay", channel="app", amount=1999, subject="Jasmine tea"),
    ]
    for number, fields in enumerate(orders, 1):
        out_trade_no = f"{run}_{number}"
        order = create_order(out_trade_no=out_trade_no, metadata={"cart": number}, **fields)
        assert order["status"] == "pending", order
        # The same request again is the same order (a safe retry), not a second charge.
        assert create_order(out_trade_no=out_trade_no, metadata={"cart": number}, **fields)["id"] == order["id"]
        pay_as_buyer(order)
        paid = wait_for_event("order.paid", out_trade_no)
        assert paid["data"]["amount"] == order["amount"], paid
        assert get_order(order["id"])["status"] == "paid"
        print(f"paid      {fields['provider']:6} {fields['channel']:12} {out_trade_no} (webhook {paid['id']})")

        refunded = refund(order["id"], order["amount"], f"{out_trade_no}_r")
        assert refunded["status"] in ("processing", "succeeded"), refunded
        wait_for_event("refund.succeeded", out_trade_no)
        assert get_order(order["id"])["status"] == "refunded"
        print(f"refunded  {fields['provider']:6} {fields['channel']:12} {out_trade_no}")

    # Errors carry a stable code to switch on.
    try:
        refund(order["id"], 1, f"{run}_again")
        raise AssertionError("a second refund of a fully refunded order was accepted")
    except PaygateError as error:
        assert error.status == 409 and error.code in ("refund_exceeds_paid", "not_refundable"), error
    server.shutdown()
    print("python example: every order paid, verified and refunded")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report and fail the CI step
        print(f"python example failed: {error!r}", file=sys.stderr)
        sys.exit(1)
