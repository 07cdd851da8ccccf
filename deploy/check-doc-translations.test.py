#!/usr/bin/env python3
"""Tests of check-doc-translations.py on throwaway repositories: what it lets through (translated
prose and comments) and what it refuses (a changed, missing, extra or re-fenced command block)."""

import importlib.util
import os
import tempfile
import unittest

_spec = importlib.util.spec_from_file_location(
    "check_doc_translations", os.path.join(os.path.dirname(__file__), "check-doc-translations.py")
)
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

ENGLISH = """# Guide

Run it:

```sh
# start the server
paygate serve --listen 127.0.0.1:0   # any free port
curl -s -d '{"note":"#1"}' "$BASE/v1/x"
grep -q 'order #1' out.txt && echo "paid #1"
```

```toml
run_at = "10:00"  # Beijing time
```

```js
// not compared: client code whose comments are prose
pay();
```
"""


class TranslationCheck(unittest.TestCase):
    """One English page and its translation in a temporary repository."""

    def problems(self, translated, english=ENGLISH, name="docs/guide"):
        with tempfile.TemporaryDirectory() as repo:
            os.makedirs(os.path.join(repo, "docs"))
            if english is not None:
                with open(os.path.join(repo, name + ".md"), "w", encoding="utf-8") as page:
                    page.write(english)
            with open(os.path.join(repo, name + ".zh-CN.md"), "w", encoding="utf-8") as page:
                page.write(translated)
            self.assertEqual(check.translated_pages(repo), [name + ".zh-CN.md"])
            return check.compare(repo, name + ".zh-CN.md")

    def test_translated_prose_and_comments_pass(self):
        translated = (
            ENGLISH.replace("# Guide", "# 指南")
            .replace("Run it:", "运行：")
            .replace("# start the server", "# 启动服务")
            .replace("# any free port", "# 任意空闲端口")
            .replace("# Beijing time", "# 北京时间")
            .replace("// not compared: client code whose comments are prose", "// 客户端代码")
        )
        self.assertEqual(self.problems(translated), [])

    def test_a_changed_command_names_the_file_block_and_line(self):
        problems = self.problems(ENGLISH.replace("127.0.0.1:0", "127.0.0.1:8080"))
        self.assertEqual(len(problems), 1)
        self.assertIn("docs/guide.zh-CN.md block 1 (```sh at line 5) differs", problems[0])
        self.assertIn("+paygate serve --listen 127.0.0.1:8080", problems[0])

    def test_a_hash_inside_quotes_is_part_of_the_command(self):
        for english, changed in [('"#1"}', '"#2"}'), ("'order #1'", "'order #2'"), ('"paid #1"', '"paid #2"')]:
            problems = self.problems(ENGLISH.replace(english, changed))
            self.assertEqual(len(problems), 1, changed)
            self.assertIn("block 1", problems[0])

    def test_a_changed_configuration_value_fails(self):
        problems = self.problems(ENGLISH.replace('"10:00"', '"11:00"'))
        self.assertEqual(len(problems), 1)
        self.assertIn("block 2 (```toml", problems[0])

    def test_a_block_fenced_so_ci_would_not_run_it_fails(self):
        problems = self.problems(ENGLISH.replace("```sh", "```text"))
        self.assertEqual(len(problems), 1)
        self.assertIn("is fenced as ```text", problems[0])

    def test_a_missing_block_fails(self):
        without_toml = ENGLISH.replace('```toml\nrun_at = "10:00"  # Beijing time\n```\n', "")
        problems = self.problems(without_toml)
        self.assertEqual(len(problems), 1)
        self.assertIn("has no block 2: docs/guide.md has ```toml block 2 at line 12", problems[0])

    def test_an_extra_block_fails(self):
        problems = self.problems(ENGLISH + "\n```sh\nrm -rf /tmp/x\n```\n")
        self.assertEqual(len(problems), 1)
        self.assertIn("block 3 (```sh at line 21) is not in docs/guide.md", problems[0])

    def test_a_translation_without_its_english_page_fails(self):
        problems = self.problems(ENGLISH, english=None)
        self.assertEqual(problems, ["docs/guide.zh-CN.md: there is no English page docs/guide.md to translate"])


if __name__ == "__main__":
    unittest.main()
