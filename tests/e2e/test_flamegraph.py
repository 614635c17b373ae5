"""End-to-end tests of `memtrace flamegraph`: the data embedded in the page
for a native capture of tests/progs/known_allocs (exact bytes at the peak,
of the leaks and of the temporary allocations), the page being
self-contained, the output's name, option errors, import-time flags on a
Python capture, and names full of markup that must stay data.
The page in a real browser is tests/browser/flamegraph.test.mjs."""
import json
import os
import re
import unittest

from harness import BUILD, CaptureTest, memtrace, prog

MIB = 1 << 20
FG_PYTHON, FG_INLINED, FG_IMPORT, FG_OTHER = 1, 2, 4, 8
DATA_RE = re.compile(
    r'<script type="application/json" id="mt-data">(.*?)</script>', re.S)

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_FILE = '"};alert(1);//</script><script>alert(2)</script><!--'
# The Python tracer names a function by its code object: code.replace()
# gives one any name and file, markup included.
HOSTILE_SCRIPT = """\
NAME = {name!r}
FILE = {file!r}
def template():
    return bytearray(8 << 20)
code = template.__code__
fields = {{"co_name": NAME, "co_filename": FILE}}
if hasattr(code, "co_qualname"):
    fields["co_qualname"] = NAME
hostile = type(template)(code.replace(**fields), globals(), NAME)
keep = hostile()
"""


def page_data(html):
    """The JSON object embedded in a flame graph page."""
    m = DATA_RE.search(html)
    assert m, "no data element in the page"
    return json.loads(m.group(1))


class Tree:
    """The page's nodes with names resolved and children listed."""

    def __init__(self, data):
        s = data["strings"]
        self.nodes = []
        for parent, fn, file, line, nbytes, count, flags in data["nodes"]:
            self.nodes.append({
                "parent": parent, "function": s[fn], "file": s[file],
                "line": line, "bytes": nbytes, "count": count,
                "flags": flags, "children": []})
        for i, n in enumerate(self.nodes):
            if n["parent"] >= 0:
                self.nodes[n["parent"]]["children"].append(i)

    def named(self, function):
        return [n for n in self.nodes if n["function"] == function
                and not n["flags"] & FG_OTHER]

    def path(self, node):
        """Function names from the root's child down to node."""
        out = []
        while node["parent"] >= 0:
            out.append(node["function"])
            node = self.nodes[node["parent"]]
        return out[::-1]

    def totals(self, function):
        """(bytes, count) over the nodes named function."""
        hits = self.named(function)
        return sum(n["bytes"] for n in hits), sum(n["count"] for n in hits)


def first_python():
    """An interpreter the build made the extension for, or None."""
    listing = os.path.join(BUILD, "python", "interpreters.txt")
    pkg = os.path.join(BUILD, "python", "memtrace")
    try:
        with open(listing) as f:
            lines = f.read().splitlines()
        built = os.listdir(pkg)
    except OSError:
        return None
    for line in lines:
        fields = line.split("\t")
        if fields[0] in ("build", "test") and len(fields) == 4 and \
                ("_memtrace" + fields[3]) in built and \
                os.access(fields[1], os.X_OK):
            return fields[1]
    return None


def python_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "MEMTRACE_", "MT_"))
            and k != "LD_PRELOAD"}


class KnownAllocsFlamegraph(CaptureTest):
    """One capture of known_allocs, several pages of it."""

    def setUp(self):
        super().setUp()
        self.capture, _ = self.record([prog("known_allocs")],
                                      name="memtrace-known.1234.bin")

    def flamegraph(self, *args, name="fg.html"):
        out = self.path(name)
        cp = memtrace("flamegraph", self.capture, "-o", out, *args)
        self.assertEqual(cp.stdout, f"Wrote {out}\n")
        with open(out, encoding="utf-8") as f:
            html = f.read()
        return html, page_data(html)

    def check_sums(self, tree):
        """Every node holds at least what its children hold; "other"
        nodes have no children."""
        for n in tree.nodes:
            kids = [tree.nodes[c] for c in n["children"]]
            self.assertGreaterEqual(n["bytes"], sum(k["bytes"] for k in kids))
            self.assertGreaterEqual(n["count"], sum(k["count"] for k in kids))
            if n["flags"] & FG_OTHER:
                self.assertEqual(kids, [])

    def test_peak(self):
        html, data = self.flamegraph()
        self.assertEqual(data["view"], "peak")
        tree = Tree(data)
        self.check_sums(tree)
        summary = json.loads(memtrace("summary", self.capture, "--json").stdout)
        root = tree.nodes[0]
        self.assertEqual(root["bytes"], summary["peak_bytes"])
        self.assertEqual(data["peak_bytes"], summary["peak_bytes"])
        # The heaviest child at every level leads to big_peak's malloc.
        node, chain = root, []
        while node["children"]:
            node = tree.nodes[node["children"][0]]
            chain.append(node["function"])
        self.assertEqual(chain[-2:], ["main", "big_peak"])
        self.assertEqual((node["bytes"], node["count"]), (10 * MIB, 1))
        self.assertTrue(node["file"].endswith("known_allocs.c"))
        self.assertEqual(node["line"], 67)
        self.assertEqual(tree.totals("big_peak"), (10 * MIB, 1))
        # No allocator frame at the leaf end.
        for name in ("malloc", "mmap", "calloc"):
            self.assertEqual(tree.named(name), [])
        # The rest of main (5024 bytes of 10 MiB, under 0.1% per site) is
        # summed into "other" boxes.
        others = [n for n in tree.nodes if n["flags"] & FG_OTHER]
        self.assertTrue(others)
        self.assertEqual(sum(n["line"] for n in others), data["merged"])
        self.assertEqual(data["threshold"], 0.001)
        self.assertEqual(tree.named("make_small"), [])

    def test_leaks(self):
        _, data = self.flamegraph("--leaks")
        self.assertEqual(data["view"], "leaks")
        tree = Tree(data)
        self.check_sums(tree)
        self.assertEqual(tree.totals("make_small"), (4000, 40))
        self.assertEqual(tree.totals("anon_mmap"), (524288, 1))
        self.assertEqual(tree.totals("thread_work"), (8000, 8))
        self.assertEqual(tree.totals("aligned"), (1024, 1))
        self.assertEqual(tree.totals("big_peak"), (0, 0))
        self.assertEqual(tree.nodes[0]["bytes"], data["current_bytes"])
        self.assertEqual(tree.path(tree.named("make_small")[0])[-2:],
                         ["main", "make_small"])
        self.assertEqual(tree.path(tree.named("thread_work")[0])[-2:],
                         ["start_thread", "thread_work"])

    def test_temporary(self):
        _, data = self.flamegraph("--temporary-allocations")
        self.assertEqual(data["view"], "temporary")
        tree = Tree(data)
        self.check_sums(tree)
        # make_calloc's 10 x 500 bytes, and realloc_chain's first two
        # blocks (other lines), are under 0.1% of the 11 MiB here.
        self.assertEqual(tree.totals("realloc_chain"), (100000, 1))
        self.assertEqual(tree.named("realloc_chain")[0]["line"], 43)
        self.assertEqual(tree.totals("big_peak"), (10 * MIB, 1))

    def test_self_contained(self):
        for args in ((), ("--leaks",)):
            html, data = self.flamegraph(*args, name=f"fg{len(args)}.html")
            self.assertNotIn("http://", html)
            self.assertNotIn("https://", html)
            self.assertNotIn("//cdn", html)
            self.assertIsNone(re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=",
                                        html, re.I))
            self.assertLess(len(html.encode()), 10 * 1000 * 1000)
            # Exactly our two script elements, and a timeline.
            self.assertEqual(len(re.findall(r"</script", html, re.I)), 2)
            self.assertGreaterEqual(len(data["samples"]), 1)
            for t, heap, rss in data["samples"]:
                self.assertLessEqual(heap, data["peak_bytes"])

    def test_default_output_name(self):
        expected = self.path("memtrace-flamegraph-known.1234.html")
        cp = memtrace("flamegraph", self.capture)
        self.assertEqual(cp.stdout, f"Wrote {expected}\n")
        self.assertTrue(os.path.exists(expected))
        # Never overwritten without -f.
        os.truncate(expected, 0)
        cp = memtrace("flamegraph", self.capture, check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("exists", cp.stderr)
        self.assertEqual(os.path.getsize(expected), 0)
        memtrace("flamegraph", self.capture, "-f")
        self.assertGreater(os.path.getsize(expected), 1000)
        self.assertEqual([f for f in os.listdir(self.tmp) if ".tmp." in f], [])

    def test_option_errors(self):
        for args, words in (
                (("--leaks", "--temporary-allocations"), "not both"),
                (("--bogus",), "unknown option"),
                (("-o",), "needs a value"),
                ((), "other.bin: cannot open")):  # FILE... are combined
            extra = ("other.bin",) if words.startswith("other") else ()
            cp = memtrace("flamegraph", self.capture, *extra, *args,
                          check=False)
            self.assertEqual(cp.returncode, 2, args)
            self.assertIn(words, cp.stderr)
        cp = memtrace("flamegraph", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("missing the capture FILE", cp.stderr)
        # Not a capture: one line naming the file, and no page.
        bad = self.path("bad.bin")
        with open(bad, "wb") as f:
            f.write(b"not a capture at all")
        cp = memtrace("flamegraph", bad, "-o", self.path("bad.html"),
                      check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertEqual(len(cp.stderr.splitlines()), 1)
        self.assertIn("bad.bin", cp.stderr)
        self.assertFalse(os.path.exists(self.path("bad.html")))
        help_text = memtrace("help", "flamegraph").stdout
        for opt in ("--leaks", "--temporary-allocations", "--hide-imports",
                    "--no-native", "-o, --output"):
            self.assertIn(opt, help_text)


class PythonFlamegraph(CaptureTest):
    """Python captures: frames of both kinds, import time, hostile names."""

    def setUp(self):
        super().setUp()
        self.python = first_python()
        if not self.python:
            self.skipTest("no Python interpreter with the extension built")

    def run_script(self, text, name="script.py", extra=()):
        script = self.path(name)
        with open(script, "w") as f:
            f.write(text)
        capture = self.path("py.bin")
        memtrace("run", "-q", "-o", capture, "--python", self.python, *extra,
                 script, env=python_env(), cwd=self.tmp)
        return script, capture

    def page(self, capture, *args):
        out = self.path("py.html")
        memtrace("flamegraph", capture, "-f", "-o", out, *args)
        with open(out, encoding="utf-8") as f:
            html = f.read()
        return html, page_data(html)

    def test_hostile_names_stay_data(self):
        _, capture = self.run_script(HOSTILE_SCRIPT.format(
            name=HOSTILE_NAME, file=HOSTILE_FILE))
        html, data = self.page(capture)
        # The names went through the pipeline unchanged...
        tree = Tree(data)
        hits = tree.named(HOSTILE_NAME)
        self.assertEqual(len(hits), 1)
        self.assertEqual(hits[0]["file"], HOSTILE_FILE)
        self.assertEqual((hits[0]["bytes"], hits[0]["count"]),
                         (8 * MIB + 1, 1))
        self.assertTrue(hits[0]["flags"] & FG_PYTHON)
        # ...and are escaped in the page: no element, no early end of the
        # data's script element, no comment opened.
        self.assertNotIn("<img", html)
        self.assertNotIn("alert(2)</script>", html)
        self.assertEqual(len(re.findall(r"</script", html, re.I)), 2)
        self.assertEqual(html.count("<!--"), 1)  # the template's own
        self.assertIn("\\u003cimg src=x onerror=alert(1)\\u003e", html)

    def test_python_frames_and_imports(self):
        script, capture = self.run_script(
            "import json, decimal\n"                  # import time
            "def grab():\n"
            "    return bytearray(3 << 20)\n"
            "keep = grab()\n")
        _, data = self.page(capture, "--hide-imports", "--no-native")
        self.assertTrue(data["hide_imports"])
        self.assertTrue(data["hide_native"])
        self.assertTrue(data["python"])
        tree = Tree(data)
        grab = [n for n in tree.named("grab") if n["file"] == script]
        self.assertEqual(len(grab), 1)
        self.assertEqual((grab[0]["bytes"], grab[0]["count"], grab[0]["line"]),
                         (3 * MIB + 1, 1, 3))
        self.assertEqual(grab[0]["flags"] & (FG_PYTHON | FG_IMPORT), FG_PYTHON)
        module = tree.nodes[grab[0]["parent"]]
        self.assertEqual((module["function"], module["file"], module["line"]),
                         ("<module>", script, 4))
        self.assertFalse(module["flags"] & FG_IMPORT)
        # The import machinery and the imported modules' bodies are
        # flagged, and hang below the script's "import" line.
        imports = [n for n in tree.nodes if n["flags"] & FG_IMPORT]
        self.assertTrue(any("importlib._bootstrap" in n["file"]
                            for n in imports))
        for n in imports:
            self.assertTrue(n["flags"] & FG_PYTHON)
            if n["function"] == "<module>":
                self.assertNotEqual(n["file"], script)
        first = [n for n in imports
                 if not tree.nodes[n["parent"]]["flags"] & FG_IMPORT]
        self.assertTrue(first)
        for n in first:
            parent = tree.nodes[n["parent"]]
            self.assertEqual((parent["file"], parent["line"]), (script, 1))


if __name__ == "__main__":
    unittest.main()
