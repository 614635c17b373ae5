"""End-to-end: `memtrace export` as folded stacks, CSV, speedscope and
pprof, read back with parsers that are not ours where one exists (Python's
csv, json and gzip modules; protoc with Debian's profile.proto; `go tool
pprof` when Go is installed; speedscope's own app and schema in
tests/browser/speedscope.test.mjs and speedscope_schema.test.mjs), each
checked site by site against `memtrace report`."""
import csv
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import unittest

from harness import MEMTRACE, CaptureTest, memtrace, prog, report_json

MIB = 1 << 20
LEAKED = {"make_small": (4000, 40), "aligned": (1024, 1),
          "anon_mmap": (512 << 10, 1), "thread_work": (8000, 8)}

# A Python function whose name is hostile to both formats: a formula for
# spreadsheets, CSV's delimiter and quote, and folded's frame separator.
HOSTILE = '''
def f():
    return bytearray(2_000_000)
name = '=cmd|x,"y";z'
code = f.__code__.replace(co_name=name)
if hasattr(code, "co_qualname"):
    code = code.replace(co_qualname=name)
f.__code__ = code
keep = f()
'''

# Debian's copy of pprof's schema (golang-github-google-pprof-dev).
PROFILE_PROTO = "/usr/share/gocode/src/github.com/google/pprof/proto/profile.proto"
PPROF_TYPES = [("alloc_objects", "count"), ("alloc_space", "bytes"),
               ("inuse_objects", "count"), ("inuse_space", "bytes")]


def report_sites(capture, *view):
    """{(function, file, line): (bytes, count)} of every site `memtrace
    report` gives in a view (none: the peak; --leaks; --all-allocations)."""
    rep = report_json("report", capture, "--top", "1000000", *view)
    return {(e["site"]["function"], e["site"]["file"], e["site"]["line"]):
            (e["bytes"], e["count"]) for e in rep["top"]}


def nonzero(sites, which):
    """{site: amount} from report_sites, which = 0 (bytes) or 1 (count),
    without zero amounts (a profile has no zero-weight samples)."""
    return {k: v[which] for k, v in sites.items() if v[which]}


def add(d, key, v):
    d[key] = d.get(key, 0) + v


# ---- speedscope --------------------------------------------------------------

def speedscope_check(test, doc):
    """Structure checks of speedscope's file format (what its schema and
    importer ask): indices in range, one weight per sample, endValue the
    total. Returns the frames."""
    test.assertEqual(doc["$schema"],
                     "https://www.speedscope.app/file-format-schema.json")
    frames = doc["shared"]["frames"]
    for f in frames:
        test.assertIsInstance(f["name"], str)
        test.assertLessEqual(set(f), {"name", "file", "line"})
        test.assertIsInstance(f.get("file", ""), str)
        test.assertGreater(f.get("line", 1), 0)
    test.assertEqual([(p["type"], p["unit"]) for p in doc["profiles"]],
                     [("sampled", "bytes"), ("sampled", "none"),
                      ("sampled", "bytes"), ("sampled", "none")])
    test.assertEqual(doc["activeProfileIndex"], 0)
    for p in doc["profiles"]:
        test.assertEqual(len(p["samples"]), len(p["weights"]))
        test.assertEqual((p["startValue"], p["endValue"]), (0, sum(p["weights"])))
        test.assertTrue(all(w > 0 for w in p["weights"]))
        for stack in p["samples"]:
            test.assertTrue(stack)
            test.assertTrue(all(0 <= i < len(frames) for i in stack))
    return frames


def speedscope_sites(doc, index):
    """{(function, file, line): weight} of profile index, by leaf frame
    (the stacks are root first; the leaf is the report's site)."""
    frames = doc["shared"]["frames"]
    p = doc["profiles"][index]
    out = {}
    for stack, w in zip(p["samples"], p["weights"]):
        f = frames[stack[-1]]
        fn = f["name"].rsplit(" (", 1)[0] if "line" in f else f["name"]
        add(out, (fn, f.get("file", ""), f.get("line", 0)), w)
    return out


# ---- pprof through protoc -------------------------------------------------------

def unquote(v):
    """A string of protobuf's text format ("..." with C escapes) as text;
    strict UTF-8, which proto3 strings must be."""
    body, out, i = v[1:-1], bytearray(), 0
    simple = {"n": b"\n", "t": b"\t", "r": b"\r", '"': b'"', "'": b"'",
              "\\": b"\\"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
        elif body[i + 1] in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:]).group()
            out.append(int(m, 8))
            i += 1 + len(m)
        elif body[i + 1] == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]).group()
            out.append(int(m, 16))
            i += 2 + len(m)
        else:
            out += simple[body[i + 1]]
            i += 2
    return out.decode("utf-8")


def parse_text_format(text):
    """protoc's text output as nested {field: [values]} dicts."""
    stack = [{}]
    for line in text.splitlines():
        line = line.strip()
        if line.endswith("{"):
            msg = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(msg)
            stack.append(msg)
        elif line == "}":
            stack.pop()
        elif line:
            name, value = line.split(":", 1)
            value = value.strip()
            stack[-1].setdefault(name, []).append(
                unquote(value) if value.startswith('"') else
                {"true": 1, "false": 0}.get(value) if value.isalpha() else
                int(value))
    return stack[0]


def one(msg, field):
    """A singular field (proto3 leaves zeros out)."""
    return msg.get(field, [0])[0]


class Pprof:
    """A profile decoded by protoc, its references checked."""

    def __init__(self, test, data):
        test.assertEqual(data[:2], b"\x1f\x8b")  # gzip
        cp = subprocess.run(["protoc", "--proto_path",
                             os.path.dirname(PROFILE_PROTO),
                             "--decode=perftools.profiles.Profile",
                             "profile.proto"], input=gzip.decompress(data),
                            capture_output=True, timeout=60)
        test.assertEqual(cp.returncode, 0, cp.stderr)
        test.assertEqual(cp.stderr, b"")
        p = self.p = parse_text_format(cp.stdout.decode("ascii"))
        st = self.strings = p["string_table"]
        test.assertEqual(st[0], "")

        def s(i):
            test.assertLess(i, len(st))
            return st[i]
        self.s = s
        self.types = [(s(one(t, "type")), s(one(t, "unit")))
                      for t in p["sample_type"]]
        self.default = s(one(p, "default_sample_type"))
        self.comments = [s(i) for i in p.get("comment", [])]
        self.functions = {one(f, "id"): f for f in p["function"]}
        self.locations = {one(loc, "id"): loc for loc in p["location"]}
        self.mappings = {one(m, "id"): m for m in p.get("mapping", [])}
        test.assertNotIn(0, self.functions)
        test.assertNotIn(0, self.locations)
        test.assertEqual(len(self.functions), len(p["function"]))
        test.assertEqual(len(self.locations), len(p["location"]))
        for f in p["function"]:
            for field in ("name", "system_name", "filename"):
                s(one(f, field))
        for m in p.get("mapping", []):
            s(one(m, "filename"))
            s(one(m, "build_id"))
        for loc in p["location"]:
            test.assertTrue(loc["line"])
            mid = one(loc, "mapping_id")
            test.assertTrue(mid == 0 or mid in self.mappings)
            for line in loc["line"]:
                test.assertIn(one(line, "function_id"), self.functions)
        for smp in p["sample"]:
            test.assertEqual(len(smp["value"]), len(self.types))
            test.assertTrue(smp["location_id"])
            for lid in smp["location_id"]:
                test.assertIn(lid, self.locations)

    def frame(self, line):
        f = self.functions[one(line, "function_id")]
        return (self.s(one(f, "name")), self.s(one(f, "filename")),
                one(line, "line"))

    def sites(self, type_name):
        """{(function, file, line): value} by leaf frame (the innermost
        line of the first location), for one sample type."""
        k = [t for t, _ in self.types].index(type_name)
        out = {}
        for smp in self.p["sample"]:
            if smp["value"][k]:
                leaf = self.locations[smp["location_id"][0]]["line"][0]
                add(out, self.frame(leaf), smp["value"][k])
        return out


def have_protoc():
    return shutil.which("protoc") and os.path.exists(PROFILE_PROTO)


NO_PROTOC = ("no protoc or no profile.proto (scripts/bootstrap installs "
             "protobuf-compiler and golang-github-google-pprof-dev)")


class Export(CaptureTest):
    def setUp(self):
        super().setUp()
        self.capture, _ = self.record([prog("known_allocs")])

    def folded(self, *args):
        out = memtrace("export", self.capture, "--format", "folded", *args).stdout
        rows = []
        for line in out.splitlines():
            stack, value = line.rsplit(" ", 1)
            rows.append((stack.split(";"), int(value)))
        return rows

    def test_folded_peak_and_leaks(self):
        peak = self.folded()
        self.assertEqual(sum(v for _, v in peak),
                         report_json("summary", self.capture)["peak_bytes"])
        big = [(s, v) for s, v in peak if s[-1].startswith("big_peak (")]
        self.assertEqual(len(big), 1)
        self.assertEqual(big[0][1], 10 * MIB)
        self.assertTrue(big[0][0][-1].endswith("known_allocs.c:67)"))
        self.assertTrue(any(f.startswith("main (") for f in big[0][0]))
        leaks = self.folded("--leaks")
        by_fn = {}
        for stack, value in leaks:
            fn = stack[-1].split(" (")[0]
            by_fn[fn] = by_fn.get(fn, 0) + value
        for fn, (size, _) in LEAKED.items():
            self.assertEqual(by_fn[fn], size, fn)

    def test_csv_snapshots(self):
        text = memtrace("export", self.capture, "--format", "csv").stdout
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual(list(rows[0].keys()),
                         ["snapshot", "bytes", "count", "function", "file",
                          "line", "module"])
        summary = report_json("summary", self.capture)
        for snap, total in (("peak", summary["peak_bytes"]),
                            ("leaks", summary["current_bytes"])):
            self.assertEqual(sum(int(r["bytes"]) for r in rows
                                 if r["snapshot"] == snap), total, snap)
        leaks = {}
        for r in rows:
            if r["snapshot"] == "leaks" and r["function"] in LEAKED:
                b, c = leaks.get(r["function"], (0, 0))
                leaks[r["function"]] = (b + int(r["bytes"]), c + int(r["count"]))
        self.assertEqual(leaks, LEAKED)
        big = [r for r in rows if r["snapshot"] == "peak"
               and r["function"] == "big_peak"]
        self.assertEqual((big[0]["bytes"], big[0]["line"]), (str(10 * MIB), "67"))

    def test_output_file_and_errors(self):
        out = self.path("x.folded")
        memtrace("export", self.capture, "--format", "folded", "-o", out)
        self.assertGreater(os.path.getsize(out), 0)
        again = memtrace("export", self.capture, "--format", "folded", "-o", out,
                         check=False)
        self.assertEqual(again.returncode, 2)
        self.assertIn("use -f", again.stderr)
        cp = memtrace("export", self.capture, "--format", "nope", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("unknown format 'nope'", cp.stderr)
        # speedscope and pprof default to a file beside the capture, named
        # after it, and never overwrite one without -f.
        for fmt, name in (("speedscope", "memtrace-speedscope-out.json"),
                          ("pprof", "memtrace-pprof-out.pb.gz")):
            cp = memtrace("export", self.capture, "--format", fmt)
            self.assertEqual(cp.stdout, f"Wrote {self.path(name)}\n")
            self.assertGreater(os.path.getsize(self.path(name)), 0)
            again = memtrace("export", self.capture, "--format", fmt,
                             check=False)
            self.assertEqual(again.returncode, 2)
            self.assertIn("use -f", again.stderr)
            memtrace("export", self.capture, "--format", fmt, "-f")
        # -o - is stdout; pprof is gzip there too.
        raw = subprocess.run([MEMTRACE, "export", self.capture, "--format",
                              "pprof", "-o", "-"], capture_output=True,
                             check=True).stdout
        self.assertEqual(raw[:2], b"\x1f\x8b")
        # ... but never onto a terminal.
        import pty
        master, slave = pty.openpty()
        try:
            cp = subprocess.run([MEMTRACE, "export", self.capture, "--format",
                                 "pprof", "-o", "-"], stdout=slave,
                                stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("binary", cp.stderr)
        # A write error is one line and exit 2; a device given with -f is
        # left alone (a half-written regular file would be removed).
        if os.path.exists("/dev/full"):
            for fmt in ("speedscope", "pprof", "folded"):
                cp = memtrace("export", self.capture, "--format", fmt, "-f",
                              "-o", "/dev/full", check=False)
                self.assertEqual(cp.returncode, 2)
                self.assertEqual(cp.stderr, "memtrace export: cannot write "
                                 "/dev/full: input/output error\n")
                self.assertTrue(os.path.exists("/dev/full"))
        # An unreadable capture leaves no export behind.
        bad = self.path("bad.bin")
        with open(bad, "wb") as f:
            f.write(b"not a capture")
        cp = memtrace("export", bad, "--format", "pprof", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertFalse(os.path.exists(self.path("memtrace-pprof-bad.pb.gz")))

    def export(self, fmt, *args, capture=None):
        """The export as bytes, through -o - (stdout)."""
        return subprocess.run([MEMTRACE, "export", capture or self.capture,
                               "--format", fmt, "-o", "-", *args],
                              capture_output=True, check=True,
                              timeout=120).stdout

    def test_speedscope_matches_the_report(self):
        doc = json.loads(self.export("speedscope"))
        frames = speedscope_check(self, doc)
        summary = report_json("summary", self.capture)
        peak, total = report_sites(self.capture), report_sites(
            self.capture, "--all-allocations")
        # Site by site, each profile is the report of its view.
        self.assertEqual(speedscope_sites(doc, 0), nonzero(peak, 0))
        self.assertEqual(speedscope_sites(doc, 1), nonzero(peak, 1))
        self.assertEqual(speedscope_sites(doc, 2), nonzero(total, 0))
        self.assertEqual(speedscope_sites(doc, 3), nonzero(total, 1))
        self.assertEqual(doc["profiles"][0]["endValue"], summary["peak_bytes"])
        self.assertEqual(doc["profiles"][2]["endValue"],
                         summary["total_bytes_allocated"])
        self.assertEqual(doc["profiles"][3]["endValue"],
                         summary["total_allocations"])
        # Known numbers: big_peak's 10 MiB at line 67, one block, called
        # from main; 8 threads x 100 x 1000 bytes over the run.
        p0 = doc["profiles"][0]
        big = [(st, w) for st, w in zip(p0["samples"], p0["weights"])
               if frames[st[-1]]["name"] == "big_peak (known_allocs.c:67)"]
        self.assertEqual([w for _, w in big], [10 * MIB])
        leaf = frames[big[0][0][-1]]
        self.assertTrue(leaf["file"].endswith("/known_allocs.c"), leaf)
        self.assertEqual(leaf["line"], 67)
        self.assertTrue(frames[big[0][0][-2]]["name"].startswith("main ("))
        by_fn = {}
        for (fn, _, _), w in speedscope_sites(doc, 2).items():
            add(by_fn, fn, w)
        self.assertEqual(by_fn["thread_work"], 800 * 1000)
        by_fn = {}
        for (fn, _, _), w in speedscope_sites(doc, 3).items():
            add(by_fn, fn, w)
        self.assertEqual((by_fn["thread_work"], by_fn["make_small"]), (800, 100))
        # --leaks: the first two profiles are the end.
        leaks = json.loads(self.export("speedscope", "--leaks"))
        speedscope_check(self, leaks)
        at_end = report_sites(self.capture, "--leaks")
        self.assertEqual(speedscope_sites(leaks, 0), nonzero(at_end, 0))
        self.assertEqual(speedscope_sites(leaks, 1), nonzero(at_end, 1))
        self.assertIn("when tracing ended", leaks["profiles"][0]["name"])
        by_fn = {}
        for (fn, _, _), w in speedscope_sites(leaks, 0).items():
            add(by_fn, fn, w)
        for fn, (size, _) in LEAKED.items():
            self.assertEqual(by_fn[fn], size, fn)

    @unittest.skipUnless(have_protoc(), NO_PROTOC)
    def test_pprof_decoded_by_protoc(self):
        prof = Pprof(self, self.export("pprof"))
        self.assertEqual(prof.types, PPROF_TYPES)
        self.assertEqual(prof.default, "inuse_space")
        self.assertIn("inuse_*: live at the high-water mark", prof.comments)
        peak, total = report_sites(self.capture), report_sites(
            self.capture, "--all-allocations")
        self.assertEqual(prof.sites("inuse_space"), nonzero(peak, 0))
        self.assertEqual(prof.sites("inuse_objects"), nonzero(peak, 1))
        self.assertEqual(prof.sites("alloc_space"), nonzero(total, 0))
        self.assertEqual(prof.sites("alloc_objects"), nonzero(total, 1))
        summary = report_json("summary", self.capture)
        self.assertEqual(sum(prof.sites("inuse_space").values()),
                         summary["peak_bytes"])
        self.assertEqual(sum(prof.sites("alloc_objects").values()),
                         summary["total_allocations"])
        # big_peak: 10 MiB live at the peak, allocated once, at line 67 of
        # known_allocs.c, called from main; the program is mapping 1.
        big = [(k, v) for k, v in prof.sites("inuse_space").items()
               if k[0] == "big_peak"]
        self.assertEqual(len(big), 1)
        (fn, file, line), value = big[0]
        self.assertEqual((value, line), (10 * MIB, 67))
        self.assertTrue(file.endswith("/known_allocs.c"), file)
        smp = next(s for s in prof.p["sample"]
                   if prof.frame(prof.locations[s["location_id"][0]]["line"][0])[0]
                   == "big_peak")
        self.assertEqual(smp["value"], [1, 10 * MIB, 1, 10 * MIB])
        caller = prof.locations[smp["location_id"][1]]["line"][-1]
        self.assertEqual(prof.frame(caller)[0], "main")
        main = prof.mappings[1]
        self.assertEqual(os.path.realpath(prof.s(one(main, "filename"))),
                         os.path.realpath(prog("known_allocs")))
        # --leaks: inuse is the end.
        leaks = Pprof(self, self.export("pprof", "--leaks"))
        self.assertIn("inuse_*: live when tracing ended", leaks.comments)
        self.assertEqual(leaks.sites("inuse_space"),
                         nonzero(report_sites(self.capture, "--leaks"), 0))
        by_fn = {}
        for (fn, _, _), v in leaks.sites("inuse_space").items():
            add(by_fn, fn, v)
        for fn, (size, _) in LEAKED.items():
            self.assertEqual(by_fn[fn], size, fn)

    @unittest.skipUnless(shutil.which("go"), "no go (golang-go) for `go tool pprof`")
    def test_pprof_read_by_go_tool_pprof(self):
        out = self.path("k.pb.gz")
        memtrace("export", self.capture, "--format", "pprof", "-o", out)
        env = dict(os.environ, HOME=self.tmp, PPROF_TMPDIR=self.tmp,
                   GOCACHE=self.path("gocache"))

        def flat(index):
            cp = subprocess.run(["go", "tool", "pprof", "-top", "-unit=B",
                                 "-nodefraction=0", "-sample_index=" + index,
                                 out], capture_output=True, text=True,
                                env=env, timeout=120)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            rows = {}
            for line in cp.stdout.splitlines():
                m = re.match(r"\s*(\d+)B?\s+\S+\s+\S+\s+\d+B?\s+\S+\s+(\S+)$",
                             line)
                if m:
                    rows[m.group(2)] = int(m.group(1))
            return cp.stdout, rows
        text, rows = flat("inuse_space")
        self.assertIn("Type: inuse_space", text)
        self.assertEqual(rows["big_peak"], 10 * MIB)
        self.assertEqual(rows["make_small"], 4000)
        _, rows = flat("alloc_space")
        self.assertEqual(rows["thread_work"], 800 * 1000)
        _, rows = flat("alloc_objects")
        self.assertEqual((rows["thread_work"], rows["make_small"]), (800, 100))

    def test_python_lines(self):
        """tests/e2e/py/known.py: its sites at their lines in both formats,
        with the report's numbers (bytes(n) is one block of n + 33)."""
        from harness import SOURCE
        script = os.path.realpath(os.path.join(SOURCE, "tests", "e2e", "py",
                                               "known.py"))
        lines = {}
        with open(script) as f:
            for n, text in enumerate(f, 1):
                m = re.search(r"# @([\w-]+)\s*$", text)
                if m:
                    lines[m.group(1)] = n
        capture = self.path("known.bin")
        cp = memtrace("run", "-q", "-o", capture, script, check=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        peak = report_sites(capture)
        doc = json.loads(self.export("speedscope", capture=capture))
        speedscope_check(self, doc)
        ss = speedscope_sites(doc, 0)
        self.assertEqual(ss, nonzero(peak, 0))
        self.assertEqual(ss[("temp", script, lines["temp"])], 50_000_033)
        self.assertEqual(speedscope_sites(doc, 1)[("leak", script, lines["leak"])],
                         1000)
        if not have_protoc():
            self.skipTest(NO_PROTOC)
        prof = Pprof(self, self.export("pprof", capture=capture))
        self.assertEqual(prof.sites("inuse_space"), nonzero(peak, 0))
        self.assertEqual(prof.sites("inuse_space")[("leak", script, lines["leak"])],
                         1000 * 1033)
        self.assertEqual(prof.sites("alloc_objects")[("f", script, lines["f"])], 1)
        # Python frames belong to no shared object: no mapping.
        leak = next(s for s in prof.p["sample"]
                    if prof.frame(prof.locations[s["location_id"][0]]["line"][0])
                    == ("leak", script, lines["leak"]))
        self.assertEqual(one(prof.locations[leak["location_id"][0]], "mapping_id"), 0)
        self.assertEqual(leak["value"], [1000, 1000 * 1033, 1000, 1000 * 1033])

    def test_hostile_names(self):
        script = self.path("hostile.py")
        with open(script, "w") as f:
            f.write(HOSTILE)
        capture = self.path("hostile.bin")
        cp = memtrace("run", "-q", "-o", capture, script, check=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.capture = capture
        rows = list(csv.DictReader(io.StringIO(
            memtrace("export", capture, "--format", "csv").stdout)))
        names = {r["function"] for r in rows}
        self.assertIn("'" + '=cmd|x,"y";z', names)  # quoted, defused, intact
        folded = self.folded()
        leaf = [s[-1] for s, v in folded if v >= 2_000_000]
        self.assertEqual(len(leaf), 1)
        self.assertTrue(leaf[0].startswith('=cmd|x,"y":z ('), leaf[0])
        # speedscope: valid JSON, the name intact.
        doc = json.loads(self.export("speedscope", capture=capture))
        frames = speedscope_check(self, doc)
        self.assertIn('=cmd|x,"y";z (hostile.py:3)', [f["name"] for f in frames])
        # pprof: valid protobuf, the name intact in the string table.
        if have_protoc():
            prof = Pprof(self, self.export("pprof", capture=capture))
            self.assertIn('=cmd|x,"y";z', prof.strings)


class BadBytes(CaptureTest):
    """Names that are not UTF-8 (a capture may hold any bytes): JSON gets
    U+FFFD from the writer, pprof's proto3 strings are made valid UTF-8 the
    same way, and protoc reads them (parse_text_format decodes strictly)."""

    NAME = b'bad\xff\xfe "q" \\ ;,\x01 \xc3'
    FILE = b"/tmp/x\xc3\x28.py"

    def capture(self):
        from test_cli import Capture  # puts tests/fixtures on sys.path
        from make_fixtures import DEF_PYCODE, DEF_PYTHON, sstr, varint
        c = Capture(flags=0x0002)  # MT_FLAG_PYTHON
        c._def(DEF_PYTHON, sstr(b"3.11.7") + varint(0))
        c._def(DEF_PYCODE, varint(1) + sstr(self.NAME) + sstr(self.FILE) +
               varint(1))
        node = c.node(0, (1 << 63) | (1 << 32) | 7)  # code 1, line 7
        c.thread(0, 4242, "main")
        c.malloc(0x10000, 4242, node)
        c.sync()
        c.trailer(1000000, 8 << 20)
        path = self.path("bad.bin")
        with open(path, "wb") as f:
            f.write(c.bytes())
        return path

    def test_names_stay_valid(self):
        capture = self.capture()
        name = self.NAME.decode("utf-8", "replace")
        file = self.FILE.decode("utf-8", "replace")
        cp = subprocess.run([MEMTRACE, "export", capture, "--format",
                             "speedscope", "-o", "-"], capture_output=True,
                            check=True, timeout=60)
        doc = json.loads(cp.stdout.decode("utf-8"))  # strict UTF-8 too
        speedscope_check(self, doc)
        self.assertEqual(speedscope_sites(doc, 0), {(name, file, 7): 4242})
        if not have_protoc():
            self.skipTest(NO_PROTOC)
        cp = subprocess.run([MEMTRACE, "export", capture, "--format", "pprof",
                             "-o", "-"], capture_output=True, check=True,
                            timeout=60)
        prof = Pprof(self, cp.stdout)
        self.assertEqual(prof.sites("inuse_space"), {(name, file, 7): 4242})
        self.assertEqual(prof.sites("alloc_objects"), {(name, file, 7): 1})


class Diff(CaptureTest):
    """`memtrace diff` on two runs of tests/e2e/py/grow.py: 1000 and then
    3000 bytearrays of 1000 bytes (1001 allocated) at the line marked grow,
    a block only in the first run (old) and one only in the second (new)."""

    def test_grown_new_and_vanished_sites(self):
        from harness import SOURCE
        script = os.path.realpath(os.path.join(SOURCE, "tests", "e2e", "py",
                                               "grow.py"))
        lines = {}
        with open(script) as f:
            for n, text in enumerate(f, 1):
                for mark in ("grow", "old", "new"):
                    if text.rstrip().endswith("# " + mark):
                        lines[mark] = n
        before, after = self.path("before.bin"), self.path("after.bin")
        for out, n in ((before, "1000"), (after, "3000")):
            cp = memtrace("run", "-q", "-o", out, script, n, check=False)
            self.assertEqual(cp.returncode, 0, cp.stderr)
        rep = report_json("diff", before, after, "--leaks", "--top", "50")
        at = {e["site"]["line"]: e for e in rep["top"]
              if os.path.realpath(e["site"]["file"]) == script}
        grow = at[lines["grow"]]
        self.assertEqual((grow["bytes"], grow["bytes_diff"], grow["count"],
                          grow["count_diff"], grow["average"], grow["status"]),
                         (3000 * 1001, 2000 * 1001, 3000, 2000, 1001, "changed"))
        self.assertEqual((at[lines["new"]]["bytes_diff"], at[lines["new"]]["status"]),
                         (700_001, "new"))
        self.assertEqual((at[lines["old"]]["bytes_diff"], at[lines["old"]]["status"],
                          at[lines["old"]]["bytes"]), (-500_001, "vanished", 0))
        self.assertEqual(rep["top"][0]["site"]["line"], lines["grow"])  # largest change
        self.assertGreaterEqual(rep["new_sites"], 1)
        self.assertGreaterEqual(rep["vanished_sites"], 1)
        self.assertEqual(rep["bytes_diff"], rep["after_bytes"] - rep["before_bytes"])
        # The text: tracemalloc's shape.
        text = memtrace("diff", before, after, "--leaks").stdout
        self.assertIn(f"grow.py:{lines['grow']}: size=2.9 MiB (+1.9 MiB), "
                      f"count=3000 (+2000), average=1001 B  in <module>", text)
        self.assertIn("[vanished]", text)
        bad = memtrace("diff", before, check=False)
        self.assertEqual(bad.returncode, 2)


if __name__ == "__main__":
    unittest.main()
