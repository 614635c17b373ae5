/* table.c: `memtrace table`, a self-contained HTML page with one row per
 * allocation site (bytes, share, allocations, average size, function,
 * location, module and the heaviest stack), sortable by any column and
 * filterable, for looking through more sites than a terminal holds.
 *
 * The page loads nothing from the network (its Content-Security-Policy
 * forbids it, too). The sites are embedded as JSON in a
 * <script type="application/json"> element, written in the JSON writer's
 * HTML-safe mode so that no name can close the element, and the page's own
 * script builds every cell with textContent: a function or file named
 * "<img src=x onerror=...>" shows as that text and never becomes markup.
 *
 * Embedded data (id "memtrace-data"):
 *   {"capture": str, "command": str, "view": "peak"|"leaks"|"all"|
 *    "temporary", "view_words": str, "bytes": int, "count": int,
 *    "peak_bytes": int, "current_bytes": int, "total_allocations": int,
 *    "total_bytes_allocated": int, "complete": bool, "warning": str|null,
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "filtered_bytes": int, "filtered_allocations": int,
 *    "sites_total": int, "omitted_sites": int, "omitted_bytes": int,
 *    "omitted_count": int,
 *    "sites": [{"bytes": int, "count": int, "function": str, "file": str,
 *               "line": int, "module": str,
 *               "stack": [{"function", "file", "line", "module",
 *                          "inlined"}...], "stack_truncated": bool}...]}
 * Sites come largest first, at most MT_TABLE_MAX_SITES of them (the
 * omitted_* fields sum up the rest); "stack" is the site's heaviest stack,
 * innermost first, without the allocator's own frames. */
#include <inttypes.h>
#include <string.h>

#include "json.h"
#include "report_util.h"

/* Sites embedded in the page, largest first; the rest are summed up. */
#define MT_TABLE_MAX_SITES 5000

static const char page_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
    "'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"generator\" content=\"memtrace " MT_VERSION_STRING "\">\n"
    "<title>memtrace table</title>\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}\n"
    "h1{font-size:1.3em;margin:0 0 .3em}\n"
    "#meta{color:#555;margin:0 0 1em;overflow-wrap:anywhere}\n"
    "#filter{width:28em;max-width:90%;padding:.3em}\n"
    "#shown{color:#555;margin-left:1em}\n"
    "table{border-collapse:collapse;margin-top:.8em;width:100%}\n"
    "th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;"
    "vertical-align:top}\n"
    "th{background:#f3f3f3;position:sticky;top:0;white-space:nowrap}\n"
    "th[data-key]{cursor:pointer;user-select:none}\n"
    "th[data-key]:hover{background:#e6e6e6}\n"
    "th[aria-sort=ascending]::after{content:\" \\25B2\"}\n"
    "th[aria-sort=descending]::after{content:\" \\25BC\"}\n"
    "td.num{text-align:right;white-space:nowrap;font-variant-numeric:"
    "tabular-nums}\n"
    "td.name{font-family:ui-monospace,monospace;overflow-wrap:anywhere}\n"
    "tr:hover td{background:#fafaf0}\n"
    "details ol{margin:.3em 0;padding-left:2em;font-family:ui-monospace,"
    "monospace;font-size:.92em}\n"
    "summary{cursor:pointer;color:#236}\n"
    ".dim{color:#777}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>memtrace table</h1>\n"
    "<p id=\"meta\"></p>\n"
    "<p><input id=\"filter\" type=\"search\" placeholder=\"Filter by "
    "function, file or module\" aria-label=\"Filter\"><span "
    "id=\"shown\"></span></p>\n"
    "<noscript><p>This page needs JavaScript to show its table.</p>"
    "</noscript>\n"
    "<table>\n"
    "<thead><tr>"
    "<th data-key=\"bytes\" data-num=\"1\">Bytes</th>"
    "<th data-key=\"share\" data-num=\"1\">Share</th>"
    "<th data-key=\"count\" data-num=\"1\">Allocations</th>"
    "<th data-key=\"avg\" data-num=\"1\">Average size</th>"
    "<th data-key=\"function\">Function</th>"
    "<th data-key=\"location\">Location</th>"
    "<th data-key=\"module\">Module</th>"
    "<th>Heaviest stack</th>"
    "</tr></thead>\n"
    "<tbody id=\"rows\"></tbody>\n"
    "</table>\n"
    "<script type=\"application/json\" id=\"memtrace-data\">";

/* The page's script: sorting, filtering, and building every cell from the
 * data with textContent (never innerHTML). */
static const char page_tail[] =
    "</script>\n"
    "<script>\n"
    "(function () {\n"
    "  \"use strict\";\n"
    "  var MAX_ROWS = 2000;\n"
    "  var data = JSON.parse(document.getElementById(\"memtrace-data\")"
    ".textContent);\n"
    "  var units = [\"B\", \"KiB\", \"MiB\", \"GiB\", \"TiB\", \"PiB\", "
    "\"EiB\"];\n"
    "  function size(b) {\n"
    "    if (b < 1024) return Math.round(b) + \" B\";\n"
    "    var u = 0;\n"
    "    while (b >= 1023.95 && u < 6) { b /= 1024; u++; }\n"
    "    return b.toFixed(1) + \" \" + units[u];\n"
    "  }\n"
    "  function el(tag, text, cls) {\n"
    "    var e = document.createElement(tag);\n"
    "    if (text !== undefined) e.textContent = text;\n"
    "    if (cls) e.className = cls;\n"
    "    return e;\n"
    "  }\n"
    "  function where(f) {\n"
    "    if (!f.file) return \"\";\n"
    "    return f.line ? f.file + \":\" + f.line : f.file;\n"
    "  }\n"
    "  function base(path) {\n"
    "    var i = path.lastIndexOf(\"/\");\n"
    "    return i < 0 ? path : path.slice(i + 1);\n"
    "  }\n"
    "  var rows = data.sites.map(function (s, i) {\n"
    "    return {i: i, s: s, bytes: s.bytes, share: s.bytes, count: s.count,\n"
    "            avg: s.count ? s.bytes / s.count : 0,\n"
    "            \"function\": s[\"function\"], location: where(s),\n"
    "            module: s.module,\n"
    "            text: [s[\"function\"], where(s), s.module].join(\"\\n\")"
    ".toLowerCase()};\n"
    "  });\n"
    "  var sortKey = \"bytes\", sortDir = -1;\n"
    "  var headers = document.querySelectorAll(\"th[data-key]\");\n"
    "  var tbody = document.getElementById(\"rows\");\n"
    "  var filter = document.getElementById(\"filter\");\n"
    "  var shown = document.getElementById(\"shown\");\n"
    "  function compare(a, b) {\n"
    "    var x = a[sortKey], y = b[sortKey];\n"
    "    var c = x < y ? -1 : x > y ? 1 : 0;\n"
    "    return c ? c * sortDir : a.i - b.i;\n"
    "  }\n"
    "  function stackList(details, s) {\n"
    "    var ol = el(\"ol\");\n"
    "    s.stack.forEach(function (f) {\n"
    "      var li = el(\"li\", f[\"function\"] || \"<unknown>\");\n"
    "      var w = where(f);\n"
    "      if (w) li.appendChild(el(\"span\", \" at \" + w, \"dim\"));\n"
    "      if (f.inlined) li.appendChild(el(\"span\", \" (inlined)\", "
    "\"dim\"));\n"
    "      ol.appendChild(li);\n"
    "    });\n"
    "    if (s.stack_truncated) ol.appendChild(el(\"li\", \"...\", \"dim\"));\n"
    "    details.appendChild(ol);\n"
    "  }\n"
    "  function row(r) {\n"
    "    var s = r.s, tr = el(\"tr\");\n"
    "    tr.appendChild(el(\"td\", size(s.bytes), \"num\"));\n"
    "    tr.appendChild(el(\"td\", (data.bytes ? 100 * s.bytes / data.bytes"
    " : 0).toFixed(1) + \"%\", \"num\"));\n"
    "    tr.appendChild(el(\"td\", String(s.count), \"num\"));\n"
    "    tr.appendChild(el(\"td\", size(r.avg), \"num\"));\n"
    "    tr.appendChild(el(\"td\", s[\"function\"], \"name\"));\n"
    "    tr.appendChild(el(\"td\", r.location, \"name\"));\n"
    "    var m = el(\"td\", base(s.module), \"name\");\n"
    "    m.title = s.module;\n"
    "    tr.appendChild(m);\n"
    "    var td = el(\"td\");\n"
    "    if (s.stack.length) {\n"
    "      var d = el(\"details\");\n"
    "      d.appendChild(el(\"summary\", s.stack.length + (s.stack.length =="
    "= 1 ? \" frame\" : \" frames\")));\n"
    "      d.addEventListener(\"toggle\", function () {\n"
    "        if (d.open && !d.querySelector(\"ol\")) stackList(d, s);\n"
    "      });\n"
    "      td.appendChild(d);\n"
    "    }\n"
    "    tr.appendChild(td);\n"
    "    return tr;\n"
    "  }\n"
    "  function render() {\n"
    "    var q = filter.value.trim().toLowerCase();\n"
    "    var list = q ? rows.filter(function (r) { return r.text.indexOf(q)"
    " >= 0; }) : rows.slice();\n"
    "    list.sort(compare);\n"
    "    var frag = document.createDocumentFragment();\n"
    "    list.slice(0, MAX_ROWS).forEach(function (r) { frag.appendChild("
    "row(r)); });\n"
    "    tbody.textContent = \"\";\n"
    "    tbody.appendChild(frag);\n"
    "    shown.textContent = list.length + \" of \" + rows.length + "
    "\" sites\" +\n"
    "      (list.length > MAX_ROWS ? \" (the first \" + MAX_ROWS + \" shown)\""
    " : \"\") +\n"
    "      (data.omitted_sites ? \"; \" + data.omitted_sites + \" smaller "
    "sites (\" + size(data.omitted_bytes) + \") are not in this page\" : "
    "\"\");\n"
    "    headers.forEach(function (h) {\n"
    "      if (h.dataset.key === sortKey) h.setAttribute(\"aria-sort\", sortDir < 0 ? "
    "\"descending\" : \"ascending\");\n"
    "      else h.removeAttribute(\"aria-sort\");\n"
    "    });\n"
    "  }\n"
    "  headers.forEach(function (h) {\n"
    "    h.addEventListener(\"click\", function () {\n"
    "      if (h.dataset.key === sortKey) sortDir = -sortDir;\n"
    "      else sortDir = h.dataset.num ? -1 : 1;\n"
    "      sortKey = h.dataset.key;\n"
    "      render();\n"
    "    });\n"
    "  });\n"
    "  filter.addEventListener(\"input\", render);\n"
    "  document.title = \"memtrace table: \" + base(data.capture);\n"
    "  document.getElementById(\"meta\").textContent = data.capture + "
    "\" \\u2014 \" + data.command + \" \\u2014 \" + size(data.bytes) + "
    "\" in \" + data.count + \" allocations \" + data.view_words + \" (peak \""
    " + size(data.peak_bytes) + \", at the end \" + size(data.current_bytes)"
    " + \")\" + (data.warning ? \" \\u2014 \" + data.warning : \"\");\n"
    "  render();\n"
    "})();\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

static const char *view_words(mt_view_t view)
{
    switch (view) {
    case MT_VIEW_LEAKS: return "live when tracing ended";
    case MT_VIEW_TOTAL: return "allocated over the run";
    case MT_VIEW_TEMPORARY: return "in temporary allocations";
    default: return "live at the peak";
    }
}

static void json_table_frame(mt_json_t *j, const mt_frame_t *f, int inlined)
{
    mt__json_key(j, "function");
    mt__json_string(j, f->function ? f->function : "");
    mt__json_key(j, "file");
    mt__json_string(j, f->file ? f->file : "");
    mt__json_key(j, "line");
    mt__json_uint(j, f->line);
    mt__json_key(j, "module");
    mt__json_string(j, f->module ? f->module : "");
    if (inlined) {
        mt__json_key(j, "inlined");
        mt__json_bool(j, f->inlined);
    }
}

static void json_site(mt_json_t *j, mt_sites_t *sites, const mt_site_t *site)
{
    mt_frame_t stack[MT_REPORT_MAX_STACK];
    int truncated = 0;
    size_t n = mt_sites_stack(sites, site->heaviest_node, stack,
                              MT_REPORT_MAX_STACK, &truncated);
    mt__json_begin_object(j);
    mt__json_key(j, "bytes");
    mt__json_uint(j, site->amount.bytes);
    mt__json_key(j, "count");
    mt__json_uint(j, site->amount.count);
    json_table_frame(j, &site->frame, 0);
    mt__json_key(j, "stack");
    mt__json_begin_array(j);
    for (size_t i = 0; i < n; i++) {
        mt__json_begin_object(j);
        json_table_frame(j, &stack[i], 1);
        mt__json_end_object(j);
    }
    mt__json_end_array(j);
    mt__json_key(j, "stack_truncated");
    mt__json_bool(j, truncated);
    mt__json_end_object(j);
}

/* The embedded data: compact, HTML-safe JSON. Returns 0 or -1. */
static int table_data(FILE *out, mt_capture_t *cap, mt_sites_t *sites,
                      mt_view_t view)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    char command[4096];
    mt_amount_t all = {0, 0};
    size_t count = mt_sites_count(sites);
    for (size_t i = 0; i < count; i++) {
        all.bytes += mt_sites_get(sites, i)->amount.bytes;
        all.count += mt_sites_get(sites, i)->amount.count;
    }
    mt_json_t j;
    mt__json_init(&j, out, 0);
    j.html_safe = 1;
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "command");
    mt__json_string(&j, mt__command_line(mt_capture_header(cap), command,
                                         sizeof command));
    mt__json_key(&j, "view");
    mt__json_string(&j, mt__view_name(view));
    mt__json_key(&j, "view_words");
    mt__json_string(&j, view_words(view));
    mt__json_key(&j, "bytes");
    mt__json_uint(&j, all.bytes);
    mt__json_key(&j, "count");
    mt__json_uint(&j, all.count);
    mt__json_key(&j, "peak_bytes");
    mt__json_uint(&j, t->peak_bytes);
    mt__json_key(&j, "current_bytes");
    mt__json_uint(&j, t->current_bytes);
    mt__json_key(&j, "total_allocations");
    mt__json_uint(&j, t->total_allocations);
    mt__json_key(&j, "total_bytes_allocated");
    mt__json_uint(&j, t->total_bytes_allocated);
    mt__json_key(&j, "complete");
    mt__json_bool(&j, t->complete);
    mt__json_key(&j, "warning");
    mt__json_string(&j, mt_capture_warning(cap));
    mt__json_filter_fields(&j, sites);
    /* A page a browser can open: the largest sites only, the rest summed
     * up. */
    size_t n = count < MT_TABLE_MAX_SITES ? count : MT_TABLE_MAX_SITES;
    mt_amount_t omitted = all;
    for (size_t i = 0; i < n; i++) {
        omitted.bytes -= mt_sites_get(sites, i)->amount.bytes;
        omitted.count -= mt_sites_get(sites, i)->amount.count;
    }
    mt__json_key(&j, "sites_total");
    mt__json_uint(&j, count);
    mt__json_key(&j, "omitted_sites");
    mt__json_uint(&j, count - n);
    mt__json_key(&j, "omitted_bytes");
    mt__json_uint(&j, omitted.bytes);
    mt__json_key(&j, "omitted_count");
    mt__json_uint(&j, omitted.count);
    mt__json_key(&j, "sites");
    mt__json_begin_array(&j);
    for (size_t i = 0; i < n; i++)
        json_site(&j, sites, mt_sites_get(sites, i));
    mt__json_end_array(&j);
    mt__json_end_object(&j);
    /* No mt__json_finish: it would add a newline; check balance here. */
    return j.error || j.depth != 0 ? -1 : 0;
}

int mt_report_table(FILE *out, mt_capture_t *cap, const mt_table_opts_t *opts)
{
    mt_view_t view = opts && opts->view <= MT_VIEW_TEMPORARY ? opts->view
                                                             : MT_VIEW_PEAK;
    mt_sites_t *sites;
    mt_sites_opts_t o = {view, opts ? opts->filter : NULL, NULL, NULL};
    int rc = mt_sites_build_opts(cap, &o, &sites);
    if (rc)
        return rc;
    fputs(page_head, out);
    if (table_data(out, cap, sites, view) < 0)
        rc = MT_EIO;
    fputs(page_tail, out);
    mt_sites_free(sites);
    return mt__report_done(out, rc);
}
