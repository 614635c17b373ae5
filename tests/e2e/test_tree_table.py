"""End-to-end: `memtrace tree` and `memtrace table` on real captures.

known_allocs (tests/progs/known_allocs.c) gives exact numbers: the tree's
JSON must put them under the right callers, its text must fit the terminal
width in UTF-8 and in ASCII, and the table's embedded JSON must carry them.
A program whose source path, and a Python script whose path, hold HTML and
a terminal escape go through the real pipeline (DWARF, the Python frames):
the page must carry them as escaped data and build its cells with
textContent, and the tree must show the escape as text. When chromium is
installed, the page is also rendered headless: the hostile name shows as
text, no <img> element exists, and sorting and filtering work."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, SOURCE, CaptureTest, memtrace, prog, report_json
from test_cli import Capture, numbers_capture

MIB = 1 << 20
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_DIR = HOSTILE + "\x1b[2J"     # and a terminal escape ("clear")
LEAKED = {"make_small": (4000, 40), "anon_mmap": (512 << 10, 1),
          "thread_work": (8000, 8), "aligned": (1024, 1)}
AT_PEAK = {"big_peak": (10 * MIB, 1), "make_small": (4000, 40),
           "aligned": (1024, 1)}


def walk(node, parents=()):
    """(node, [ancestor functions, outermost first]) for every node."""
    yield node, list(parents)
    for child in node["children"]:
        yield from walk(child, parents + (node["function"],))


def nodes_named(tree, function):
    return [(n, p) for n, p in walk(tree["root"]) if n["function"] == function]


def embedded_data(html):
    """The JSON of the page's <script type="application/json"> element."""
    m = re.search(r'<script type="application/json" id="memtrace-data">'
                  r'(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def run_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LC_", "MEMTRACE_")) and k not in
           ("LANG", "LANGUAGE", "COLUMNS", "LD_PRELOAD")}
    env.update(extra)
    return env


class KnownTree(unittest.TestCase):
    """One capture of known_allocs for all tree and table tests."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mt-tree-")
        cls.capture = os.path.join(cls.tmp, "known.bin")
        cp = memtrace("run", "-q", "-o", cls.capture, "--",
                      prog("known_allocs"))
        assert cp.stdout == "known_allocs: done\n", cp.stdout

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tree(self, *args):
        return report_json("tree", self.capture, *args)

    def text(self, *args, columns=None, lc="C.UTF-8"):
        env = run_env(LC_ALL=lc)
        if columns is not None:
            env["COLUMNS"] = str(columns)
        cp = memtrace("tree", self.capture, *args, env=env,
                      encoding="utf-8", errors="strict")
        return cp.stdout

    # ---- tree --json --------------------------------------------------------

    def test_json_peak_exact(self):
        t = self.tree("--top", "1000")
        s = report_json("summary", self.capture)
        self.assertEqual(t["view"], "peak")
        self.assertEqual(t["root"]["function"], "<root>")
        self.assertEqual(t["bytes"], s["peak_bytes"])
        self.assertEqual(t["root"]["bytes"], s["peak_bytes"])
        for fn, (size, count) in AT_PEAK.items():
            found = nodes_named(t, fn)
            self.assertEqual(len(found), 1, fn)
            node, parents = found[0]
            self.assertEqual((node["bytes"], node["count"]), (size, count), fn)
            self.assertEqual((node["self_bytes"], node["self_count"]),
                             (size, count), fn)
            self.assertEqual(node["children"], [], fn)  # malloc dropped
            self.assertEqual(parents[-1], "main", fn)
            self.assertEqual(parents[0], "<root>")
            self.assertTrue(node["file"].endswith("known_allocs.c"), node)
            self.assertGreater(node["line"], 0)
        self.assertEqual(nodes_named(t, "anon_mmap"), [])  # mapped later
        self.assertEqual(nodes_named(t, "malloc"), [])

    def test_json_leaks_exact(self):
        t = self.tree("--leaks", "--top", "1000")
        s = report_json("summary", self.capture)
        self.assertEqual(t["view"], "leaks")
        self.assertEqual(t["root"]["bytes"], s["current_bytes"])
        self.assertEqual(t["root"]["count"], s["current_allocations"])
        for fn, (size, count) in LEAKED.items():
            found = nodes_named(t, fn)
            self.assertEqual(len(found), 1, fn)
            node, parents = found[0]
            self.assertEqual((node["bytes"], node["count"]), (size, count), fn)
            self.assertEqual(node["self_bytes"], size, fn)
            want = "start_thread" if fn == "thread_work" else "main"
            self.assertEqual(parents[-1], want, (fn, parents))
        self.assertEqual(t["other_stacks"], 0)
        self.assertEqual(t["shown_stacks"], t["stacks"])
        # Every node: its subtree is itself plus its children (all shown),
        # and children come largest first.
        for node, _ in walk(t["root"]):
            kids = node["children"]
            self.assertEqual(node["bytes"], node["self_bytes"] +
                             sum(k["bytes"] for k in kids), node["function"])
            self.assertEqual(node["count"], node["self_count"] +
                             sum(k["count"] for k in kids), node["function"])
            sizes = [k["bytes"] for k in kids]
            self.assertEqual(sizes, sorted(sizes, reverse=True))

    def test_json_top_limits_leaf_stacks(self):
        t = self.tree("--leaks", "--top", "2")
        leaves = {n["function"]: n["self_bytes"] for n, _ in walk(t["root"])
                  if n["self_bytes"]}
        self.assertEqual(leaves, {"anon_mmap": 512 << 10, "thread_work": 8000})
        self.assertEqual(t["shown_stacks"], 2)
        self.assertEqual(t["other_stacks"], t["stacks"] - 2)
        self.assertEqual(t["other_bytes"], t["bytes"] - (512 << 10) - 8000)
        self.assertEqual(t["other_count"], t["count"] - 1 - 8)
        # The root still counts everything.
        full = self.tree("--leaks", "--top", "1000")
        self.assertEqual(t["bytes"], full["bytes"])
        self.assertEqual(t["stacks"], full["stacks"])

    # ---- tree text ----------------------------------------------------------

    def check_width(self, out, columns):
        for line in out.splitlines():
            self.assertLessEqual(len(line), columns, repr(line))

    def test_text_fits_60_and_200_columns(self):
        for columns in (60, 200):
            for args in ((), ("--leaks",)):
                out = self.text(*args, columns=columns)
                self.check_width(out, columns)
                self.assertIn("\u2514\u2500\u2500 ", out)
        wide = self.text("--leaks", columns=200)
        line = next(l for l in wide.splitlines() if "anon_mmap" in l)
        self.assertRegex(line, r"^ 512\.0 KiB  97\.\d%  .*anon_mmap at "
                               r"\S*/known_allocs\.c:\d+$")
        peak = self.text(columns=60)
        line = next(l for l in peak.splitlines() if "big_peak" in l)
        self.assertTrue(line.startswith("  10.0 MiB  99.9%  ") or
                        line.startswith("  10.0 MiB 100.0%  "), line)
        self.assertIn("\u2026", peak)      # names were shortened
        root = peak.splitlines()[3]
        self.assertRegex(root, r"^ +[\d.]+ MiB 100\.0%  <root>$")

    def test_text_default_width_is_100(self):
        out = self.text("--leaks")
        self.check_width(out, 100)
        self.assertTrue(any(len(l) > 80 for l in out.splitlines()))

    def test_text_ascii_without_utf8(self):
        out = self.text("--leaks", columns=60, lc="C")
        out.encode("ascii")              # no box drawing, no ellipsis char
        self.check_width(out, 60)
        self.assertIn("`-- ", out)
        self.assertIn("|-- ", out)
        self.assertIn("...", out)
        self.assertNotIn("\u2514", out)

    def test_text_other_stacks_line(self):
        t = self.tree("--leaks", "--top", "1")
        out = self.text("--leaks", "--top", "1", columns=200)
        n = t["other_stacks"]
        self.assertGreaterEqual(n, 4)
        self.assertRegex(out.splitlines()[-1],
                         r"^%d other stacks: [\d.]+ KiB \([\d.]+%%\) in %d "
                         r"allocations$" % (n, t["other_count"]))
        self.assertIn("The 1 largest of %d stacks" % t["stacks"], out)
        self.assertNotIn("thread_work", out)
        self.assertIn("anon_mmap", out)

    def test_tree_errors(self):
        cp = memtrace("tree", os.path.join(self.tmp, "nope.bin"), check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertEqual(cp.stdout, "")
        self.assertEqual(cp.stderr.count("\n"), 1)
        self.assertIn("nope.bin", cp.stderr)
        for bad in (("--top", "0"), ("--top", "x"), ("--bogus",)):
            cp = memtrace("tree", self.capture, *bad, check=False)
            self.assertEqual(cp.returncode, 2, bad)
            self.assertIn("memtrace tree: ", cp.stderr)

    # ---- table --------------------------------------------------------------

    def table(self, *args, out=None):
        out = out or os.path.join(self.tmp, "t%d.html" % id(args))
        memtrace("table", self.capture, "-o", out, "-f", *args)
        with open(out, encoding="utf-8") as f:
            return f.read()

    def sites(self, data):
        out = {}
        for s in data["sites"]:
            e = out.setdefault(s["function"], [0, 0])
            e[0] += s["bytes"]
            e[1] += s["count"]
        return {k: tuple(v) for k, v in out.items()}

    def test_table_embeds_exact_numbers(self):
        html = self.table()
        data = embedded_data(html)
        s = report_json("summary", self.capture)
        self.assertEqual(data["view"], "peak")
        self.assertEqual(data["bytes"], s["peak_bytes"])
        sites = self.sites(data)
        for fn, amount in AT_PEAK.items():
            self.assertEqual(sites[fn], amount, fn)
        big = next(x for x in data["sites"] if x["function"] == "big_peak")
        self.assertEqual(data["sites"][0], big)         # largest first
        self.assertEqual([f["function"] for f in big["stack"]][:2],
                         ["big_peak", "main"])
        self.assertIn('"bytes":10485760', html)

        leaks = embedded_data(self.table("--leaks"))
        self.assertEqual(leaks["view"], "leaks")
        self.assertEqual(leaks["bytes"], s["current_bytes"])
        sites = self.sites(leaks)
        for fn, amount in LEAKED.items():
            self.assertEqual(sites[fn], amount, fn)
        tw = next(x for x in leaks["sites"] if x["function"] == "thread_work")
        self.assertIn("start_thread", [f["function"] for f in tw["stack"]])

    def test_table_self_contained_and_text_only(self):
        html = self.table()
        self.assertNotRegex(html, r"(?i)https?://")
        self.assertNotRegex(html, r"(?i)<(link|img|iframe|object|embed)\b")
        self.assertNotRegex(html, r"(?i)<script[^>]*\bsrc=")
        self.assertIn("default-src 'none'", html)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML",
                     "document.write", "eval("):
            self.assertNotIn(sink, html)
        self.assertIn(".textContent = text", html)
        self.assertEqual(html.count("<script"), 2)
        self.assertEqual(html.count("</script>"), 2)
        for header in ("Bytes", "Share", "Allocations", "Average size",
                       "Function", "Location", "Module", "Heaviest stack"):
            self.assertIn(">%s</th>" % header, html)
        self.assertIn('id="filter"', html)

    def test_table_default_output_and_force(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        capture = os.path.join(d, "run.bin")
        shutil.copy(self.capture, capture)
        cp = memtrace("table", capture, cwd=self.tmp)
        want = os.path.join(d, "memtrace-table-run.html")
        self.assertEqual(cp.stdout, "Wrote %s\n" % want)
        self.assertTrue(os.path.isfile(want))
        before = os.stat(want).st_mtime_ns
        cp = memtrace("table", capture, check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("-f", cp.stderr)
        self.assertEqual(cp.stderr.count("\n"), 1)
        self.assertEqual(os.stat(want).st_mtime_ns, before)
        cp = memtrace("table", capture, "--force", "--leaks")
        with open(want, encoding="utf-8") as f:
            self.assertEqual(embedded_data(f.read())["view"], "leaks")
        # "-" is stdout.
        cp = memtrace("table", capture, "-o", "-")
        self.assertEqual(embedded_data(cp.stdout)["bytes"],
                         report_json("summary", capture)["peak_bytes"])
        # A capture that cannot be read leaves no page behind.
        bad = os.path.join(d, "bad.bin")
        with open(bad, "w") as f:
            f.write("not a capture\n")
        cp = memtrace("table", bad, check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(d, "memtrace-table-bad.html")))

    # ---- the page in a browser ---------------------------------------------

    def test_table_sorts_and_filters_in_browser(self):
        browser = find_browser()
        if not browser:
            self.skipTest("no chromium to render the page")
        html = self.table("--leaks")
        data = embedded_data(html)
        probe = """<script>
setTimeout(function () {
  function col(i) { return Array.prototype.map.call(
    document.querySelectorAll("#rows tr"),
    function (tr) { return tr.children[i].textContent; }); }
  var out = {initial: col(4), sizes: col(0)};
  var count = document.querySelector("th[data-key=count]");
  count.click(); out.byCount = col(4);
  out.countSort = count.getAttribute("aria-sort");
  count.click(); out.byCountAsc = col(4);
  document.querySelector("th[data-key=function]").click();
  out.byFunction = col(4);
  var f = document.getElementById("filter");
  f.value = "THREAD_W"; f.dispatchEvent(new Event("input"));
  out.filtered = col(4);
  out.shown = document.getElementById("shown").textContent;
  var d = document.querySelector("#rows details");
  d.open = true;
  setTimeout(function () {
    out.stack = Array.prototype.map.call(d.querySelectorAll("li"),
      function (li) { return li.textContent; });
    var pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 50);
}, 50);
</script>
</body>"""
        dom = render(browser, html.replace("</body>", probe), self.tmp)
        m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
        self.assertIsNotNone(m, dom[-2000:])
        out = json.loads(m.group(1).replace("&quot;", '"')
                         .replace("&lt;", "<").replace("&gt;", ">")
                         .replace("&amp;", "&"))
        names = [s["function"] for s in data["sites"]]
        self.assertEqual(out["initial"], names)
        self.assertEqual(out["sizes"][0], "512.0 KiB")
        by_count = sorted(range(len(names)),
                          key=lambda i: (-data["sites"][i]["count"], i))
        self.assertEqual(out["byCount"], [names[i] for i in by_count])
        self.assertEqual(out["countSort"], "descending")
        by_count_asc = sorted(range(len(names)),
                              key=lambda i: (data["sites"][i]["count"], i))
        self.assertEqual(out["byCountAsc"], [names[i] for i in by_count_asc])
        self.assertEqual(out["byFunction"], sorted(names))
        self.assertEqual(out["filtered"], ["thread_work"])
        self.assertEqual(out["shown"], "1 of %d sites" % len(names))
        self.assertTrue(out["stack"][0].startswith("thread_work at "),
                        out["stack"])
        self.assertIn("start_thread", " ".join(out["stack"]))


def find_browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render(browser, html, tmp):
    """The DOM of html after its scripts ran, from headless chromium."""
    page = os.path.join(tmp, "render-%d.html" % os.getpid())
    with open(page, "w", encoding="utf-8") as f:
        f.write(html)
    profile = tempfile.mkdtemp(dir=tmp)
    cp = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--user-data-dir=" + profile, "--virtual-time-budget=3000",
         "--dump-dom", "file://" + page],
        capture_output=True, timeout=120)
    return cp.stdout.decode("utf-8", "replace")


class Synthetic(unittest.TestCase):
    """Captures written by test_cli's writer: exact text, an empty view,
    and stacks deeper than any terminal."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mt-synth-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def text(self, *args, columns=100, lc="C.UTF-8"):
        return memtrace("tree", *args, env=run_env(LC_ALL=lc,
                                                   COLUMNS=str(columns)),
                        encoding="utf-8").stdout

    def test_exact_text(self):
        # Peak 1750: 1000 + 250 at 0x2000 and 500 at 0x3000, both called
        # from 0x1000.
        path = self.write("n.bin", numbers_capture())
        self.assertEqual(self.text(path), (
            "Memory live at the peak: 1.7 KiB in 3 allocations\n"
            "All 2 stacks and their callers:\n"
            "\n"
            "   1.7 KiB 100.0%  <root>\n"
            "   1.7 KiB 100.0%  \u2514\u2500\u2500 0x1000\n"
            "   1.2 KiB  71.4%      \u251c\u2500\u2500 0x2000\n"
            "     500 B  28.6%      \u2514\u2500\u2500 0x3000\n"))
        self.assertEqual(self.text(path, "--leaks", "--top", "1", lc="C"), (
            "Memory live when tracing ended: 860 B in 4 allocations\n"
            "The 1 largest of 2 stacks and their callers:\n"
            "\n"
            "     860 B 100.0%  <root>\n"
            "     860 B 100.0%  `-- 0x1000\n"
            "     610 B  70.9%      `-- 0x3000\n"
            "1 other stack: 250 B (29.1%) in 1 allocation\n"))
        t = report_json("tree", path)
        self.assertEqual((t["bytes"], t["count"], t["stacks"]), (1750, 3, 2))
        top = t["root"]["children"][0]
        self.assertEqual((top["function"], top["bytes"], top["self_bytes"]),
                         ("0x1000", 1750, 0))
        self.assertEqual([(c["function"], c["bytes"], c["count"])
                          for c in top["children"]],
                         [("0x2000", 1250, 2), ("0x3000", 500, 1)])

    def test_nothing_live(self):
        c = Capture()
        c.node(0, 0x1000)
        c.thread(0, 1, "main")
        c.malloc(0x100, 300, 1)
        c.free(0x100)
        c.sync()
        c.trailer(1000, 1 << 20)
        path = self.write("empty.bin", c.bytes())
        self.assertEqual(self.text(path, "--leaks"),
                         "Memory live when tracing ended: 0 B in 0 "
                         "allocations\n")
        t = report_json("tree", path, "--leaks")
        self.assertEqual((t["bytes"], t["stacks"], t["root"]["children"]),
                         (0, 0, []))
        page = memtrace("table", path, "--leaks", "-o", "-").stdout
        self.assertEqual(embedded_data(page)["sites"], [])

    def test_deep_stack(self):
        depth = 300
        c = Capture()
        parent = 0
        for i in range(depth):
            parent = c.node(parent, 0x1000 + 16 * i)
        c.thread(0, 1, "main")
        c.malloc(0x100, 777, parent)
        c.sync()
        c.trailer(1000, 1 << 20)
        path = self.write("deep.bin", c.bytes())
        t = report_json("tree", path)
        node, parents = nodes_named(t, "0x%x" % (0x1000 + 16 * (depth - 1)))[0]
        self.assertEqual(len(parents), depth)         # <root> and 299 callers
        self.assertEqual((node["bytes"], node["self_bytes"]), (777, 777))
        for columns in (40, 60, 100):
            for lc in ("C.UTF-8", "C"):
                out = self.text(path, columns=columns, lc=lc)
                lines = out.splitlines()
                self.assertEqual(len(lines), 3 + 1 + depth)
                for line in lines:
                    self.assertLessEqual(len(line), columns, repr(line))
                self.assertRegex(lines[-1], r"^     777 B 100\.0%  \+\d+ +"
                                            r"(\u2514\u2500\u2500|`--) 0x22b0$")


class MillionStacks(unittest.TestCase):
    """tests/fixtures/million-stacks.bin: a million distinct stacks. The
    tree shows ten, the page holds the 5000 largest sites and sums up the
    rest, and both stay quick."""
    FIXTURE = os.path.join(SOURCE, "tests", "fixtures", "million-stacks.bin")

    def setUp(self):
        if not os.path.exists(self.FIXTURE):
            self.skipTest("no million-stacks fixture")
        self.tmp = tempfile.mkdtemp(prefix="mt-million-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_tree_and_table(self):
        s = report_json("summary", self.FIXTURE)
        t = report_json("tree", self.FIXTURE, "--leaks")
        self.assertEqual(t["bytes"], s["current_bytes"])
        self.assertEqual(t["shown_stacks"], 10)
        leaves = [n for n, _ in walk(t["root"]) if n["self_count"]]
        self.assertEqual(len(leaves), 10)
        self.assertEqual(t["other_bytes"],
                         t["bytes"] - sum(n["self_bytes"] for n in leaves))
        self.assertEqual(t["other_stacks"], t["stacks"] - 10)
        self.assertGreaterEqual(t["stacks"], 1000000)

        out = os.path.join(self.tmp, "m.html")
        memtrace("table", self.FIXTURE, "--leaks", "-o", out)
        self.assertLess(os.path.getsize(out), 20 * MIB)
        with open(out, encoding="utf-8") as f:
            data = embedded_data(f.read())
        self.assertEqual(len(data["sites"]), 5000)
        self.assertEqual(data["sites_total"], t["stacks"])
        self.assertEqual(data["omitted_sites"], data["sites_total"] - 5000)
        self.assertEqual(data["omitted_bytes"], data["bytes"] -
                         sum(x["bytes"] for x in data["sites"]))
        self.assertEqual(data["bytes"], s["current_bytes"])


# Line 5: malloc; line 7: strdup, whose own frame (the C library's, an
# allocator helper) must not show as the leaf.
HOSTILE_C = """#include <stdlib.h>
#include <string.h>
void *volatile keep, *volatile keep2;
__attribute__((noinline)) void hostile_alloc(void)
{ keep = malloc(4242); }
__attribute__((noinline)) void dup_alloc(void)
{ keep2 = strdup("0123456789"); }
int main(void) { hostile_alloc(); dup_alloc(); return 0; }
"""


class HostileNames(CaptureTest):
    """Names that are HTML and terminal escapes, from the real pipeline."""

    def setUp(self):
        super().setUp()
        self.dir = os.path.join(self.tmp, HOSTILE_DIR)
        os.mkdir(self.dir)

    def native_capture(self):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler")
        src = os.path.join(self.dir, "hostile.c")
        with open(src, "w") as f:
            f.write(HOSTILE_C)
        exe = self.path("hostile")
        subprocess.run([cc, "-g", "-O0", "-fno-omit-frame-pointer",
                        "-fno-builtin", "-o", exe, src], check=True,
                       timeout=120)
        capture, _ = self.record([exe], name="hostile.bin")
        return capture, src

    def check_page(self, html, file, function):
        data = embedded_data(html)
        site = next(s for s in data["sites"] if s["function"] == function)
        self.assertEqual(site["file"], file)         # exact after decoding
        self.assertFalse("<img" in html, "raw <img in the page")
        self.assertFalse("\x1b" in html, "raw ESC in the page")
        self.assertIn("\\u003cimg src=x onerror=alert(1)\\u003e\\u001b[2J",
                      html)
        self.assertEqual(html.count("</script>"), 2)
        return site

    def test_native_file_name_in_table_and_tree(self):
        capture, src = self.native_capture()
        out = self.path("page.html")
        memtrace("table", capture, "--leaks", "-o", out)
        with open(out, encoding="utf-8") as f:
            html = f.read()
        site = self.check_page(html, src, "hostile_alloc")
        self.assertEqual((site["bytes"], site["count"]), (4242, 1))

        text = memtrace("tree", capture, "--leaks",
                        env=run_env(LC_ALL="C.UTF-8", COLUMNS="300")).stdout
        self.assertNotIn("\x1b", text)
        line = next(l for l in text.splitlines() if "hostile_alloc" in l)
        self.assertIn(HOSTILE + "\\x1b[2J/hostile.c:5", line)
        t = report_json("tree", capture, "--leaks")
        node, parents = nodes_named(t, "hostile_alloc")[0]
        self.assertEqual((node["file"], node["line"], node["bytes"]),
                         (src, 5, 4242))
        self.assertEqual(parents[-1], "main")
        # strdup's allocation ends at its caller: the allocator's frames
        # are dropped at the leaf end.
        node, parents = nodes_named(t, "dup_alloc")[0]
        self.assertEqual((node["line"], node["self_bytes"], node["self_count"],
                          node["children"]), (7, 11, 1, []))
        self.assertEqual(nodes_named(t, "strdup") + nodes_named(t, "__strdup")
                         + nodes_named(t, "malloc"), [])

        browser = find_browser()
        if browser:
            dom = render(browser, html, self.tmp)
            self.assertIn("<td class=\"name\">hostile_alloc</td>", dom)
            self.assertIn("&lt;img src=x onerror=alert(1)&gt;", dom)
            self.assertFalse("<img" in dom, "an <img> element was made")

    def test_python_script_name_in_table(self):
        python = first_python()
        if not python:
            self.skipTest("no Python interpreter with the extension built")
        script = os.path.join(self.dir, "hostile <b>.py")
        with open(script, "w") as f:
            f.write("def grab():\n"
                    "    return bytearray(777777)\n"
                    "keep = grab()\n")
        capture = self.path("py.bin")
        memtrace("run", "-q", "-o", capture, "--python", python, script,
                 env=run_env())
        out = self.path("py.html")
        memtrace("table", capture, "-o", out)
        with open(out, encoding="utf-8") as f:
            html = f.read()
        site = self.check_page(html, script, "grab")
        self.assertEqual((site["bytes"], site["count"], site["line"]),
                         (777778, 1, 2))
        self.assertIn("\\u003cb\\u003e.py", html)
        self.assertEqual([(f["function"], f["line"]) for f in site["stack"]],
                         [("grab", 2), ("<module>", 3)])


def display_width(line):
    """Terminal columns of line: East Asian wide characters take two."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in line)


class WideNames(CaptureTest):
    def test_python_wide_names_fit(self):
        python = first_python()
        if not python:
            self.skipTest("no Python interpreter with the extension built")
        d = os.path.join(self.tmp, "\u5185\u5b58" * 30)      # 60 wide chars
        os.mkdir(d)
        script = os.path.join(d, "\u5206\u914d.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write("def \u5206\u914d\u5927\u91cf\u7684\u5185\u5b58"
                    "\u5757\u4ee5\u4fbf\u6d4b\u8bd5():\n"
                    "    return bytearray(30000000)\n"
                    "keep = \u5206\u914d\u5927\u91cf\u7684\u5185\u5b58"
                    "\u5757\u4ee5\u4fbf\u6d4b\u8bd5()\n")
        capture = self.path("wide.bin")
        memtrace("run", "-q", "-o", capture, "--python", python, script,
                 env=run_env())
        for columns in (60, 100, 200):
            out = memtrace("tree", capture, "--top", "3",
                           env=run_env(LC_ALL="C.UTF-8", COLUMNS=str(columns)),
                           encoding="utf-8").stdout
            lines = [l for l in out.splitlines() if "\u5206" in l]
            self.assertTrue(lines, out)
            for line in out.splitlines():
                self.assertLessEqual(display_width(line), columns, line)
            if columns == 200:   # the whole name, the path shortened
                fn = ("\u5206\u914d\u5927\u91cf\u7684\u5185\u5b58\u5757"
                      "\u4ee5\u4fbf\u6d4b\u8bd5")
                line = next(l for l in lines if "\u2500 " + fn + " at " in l)
                self.assertTrue(line.endswith("\u5185\u5b58/"
                                              "\u5206\u914d.py:2"), line)
                self.assertIn("\u2026", line)
                self.assertGreaterEqual(display_width(line), 195, line)


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
                ("_memtrace" + fields[3]) in built and os.access(fields[1], os.X_OK):
            return fields[1]
    return None


if __name__ == "__main__":
    unittest.main()
