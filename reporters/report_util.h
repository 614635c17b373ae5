/* report_util.h: pieces the reports share, private to reporters/: writing a
 * frame, a site with its heaviest stack, and the capture's identity, the
 * same way in every report. */
#ifndef MT_REPORTERS_REPORT_UTIL_H
#define MT_REPORTERS_REPORT_UTIL_H

#include <stdio.h>

#include "json.h"
#include "memtrace/reporters.h"

/* {"function": str, "file": str, "line": int, "module": str} */
void mt__json_frame(mt_json_t *j, const mt_frame_t *f);

/* {"bytes": int, "count": int, "site": frame, "stack": [frame...],
 *  "stack_truncated": bool}: stack is the site's heaviest stack, innermost
 * first, cut after MT_REPORT_MAX_STACK frames (then stack_truncated). */
void mt__json_site_entry(mt_json_t *j, mt_sites_t *sites,
                         const mt_site_t *site);

/* The first n sites of sites as a JSON array of site entries. */
void mt__json_site_list(mt_json_t *j, mt_sites_t *sites, size_t n);

/* Where a site is, for a heading: "file:line", or without a line the
 * function ("ls+0x180b0", "0x401000"), or the file; escaped. */
void mt__text_location(FILE *out, const mt_frame_t *f);

/* A traceback line: "file:line in function", or "function (file)" without
 * a line, or just the function when there is no file; escaped. */
void mt__text_frame(FILE *out, const mt_frame_t *f);

/* "#rank: location: SIZE in N allocations", then, with traceback, the
 * site's heaviest stack as "    location in function" lines. */
void mt__text_site_entry(FILE *out, mt_sites_t *sites, const mt_site_t *site,
                         size_t rank, int traceback);

/* "12 allocations" / "1 allocation" */
const char *mt__plural(uint64_t n, const char *one, const char *many);

/* Builds the sites of view, calls json or text (per opts->json) with them,
 * frees them, and finishes like mt__report_done. For reports whose output
 * is a function of the capture and its sites. */
typedef void (*mt_sites_writer_fn)(FILE *out, mt_capture_t *cap,
                                   mt_sites_t *sites);
int mt__report_with_sites(FILE *out, mt_capture_t *cap, mt_view_t view,
                          const mt_report_opts_t *opts,
                          mt_sites_writer_fn json, mt_sites_writer_fn text);

/* The filter as JSON: {"include": [glob...], "exclude": [glob...]}, or
 * null without one. */
void mt__json_filter(mt_json_t *j, const mt_filter_t *filter);

/* The fields "filter" (mt__json_filter), "filtered_bytes" and
 * "filtered_allocations" (what the filter left out) of sites. */
void mt__json_filter_fields(mt_json_t *j, const mt_sites_t *sites);

/* With a filter, one text line naming its globs and what it left out
 * ("Filter: --include 'myproj/ANY': left out 1.2 MiB in 30
 * allocations"); nothing without one. */
void mt__text_filter(FILE *out, const mt_sites_t *sites);

/* The view's name in JSON: "peak", "leaks", "all" or "temporary". */
const char *mt__view_name(mt_view_t view);

/* The program's arguments joined by spaces into buf (cut to fit). */
char *mt__command_line(const mt_header_t *hdr, char *buf, size_t len);

/* "window": {...} or null, and "processes": [...] (see summary.c). */
void mt__json_job(mt_json_t *j, mt_capture_t *cap);

/* Text lines on the window and, when several were combined, the
 * processes: "Window: ...", "Combined: N processes", one line each. */
void mt__text_job(FILE *out, mt_capture_t *cap);

/* Flushes out and turns a write error into MT_EIO. */
int mt__report_done(FILE *out, int rc);

#endif
