/* coverage_html.c: provium coverage --html DIR: DIR/index.html, one self-contained page (inline
 * CSS and script, nothing fetched) that shows the --json document as a sortable table per
 * category, each entry with the tests that exercised it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coverage_output.h"

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>provium coverage</title>\n<style>\n"
    "body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }\n"
    "h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }\n"
    "table { border-collapse: collapse; min-width: 40em; }\n"
    "th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left;\n"
    "  vertical-align: top; }\n"
    "th { cursor: pointer; background: #f3f3f3; user-select: none; }\n"
    "th[data-dir=asc]::after { content: \" \\25B2\"; } th[data-dir=desc]::after { content: \" "
    "\\25BC\"; }\n"
    "td.calls, td.ntests, td.hits { text-align: right; font-variant-numeric: tabular-nums; }\n"
    "td.name { font-family: monospace; } ul { margin: 0.2em 0; padding-left: 1.2em; }\n"
    "p.none, p.note { color: #777; } .names { font-family: monospace; max-width: 60em; }\n"
    "</style>\n</head>\n<body>\n<h1>provium coverage</h1>\n"
    "<p id=\"summary\"></p>\n<div id=\"report\"><noscript>This page needs JavaScript to draw "
    "its tables; provium coverage --json has the same data.</noscript></div>\n"
    "<script type=\"application/json\" id=\"coverage-data\">\n";

/* Draws the tables from the JSON above; a click on a column's heading sorts by it. */
static const char page_tail[] =
    "</script>\n<script>\n"
    "'use strict';\n"
    "const data = JSON.parse(document.getElementById('coverage-data').textContent);\n"
    "function el(tag, attrs, ...kids) {\n"
    "  const e = document.createElement(tag);\n"
    "  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);\n"
    "  for (const k of kids) e.append(k);\n"
    "  return e;\n"
    "}\n"
    "function results(r) {\n"
    "  return Object.entries(r).map(([k, n]) => k + ' ' + n).join(', ');\n"
    "}\n"
    "function sortBy(table, col, numeric, th) {\n"
    "  const dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';\n"
    "  for (const h of table.tHead.rows[0].cells) delete h.dataset.dir;\n"
    "  th.dataset.dir = dir;\n"
    "  const body = table.tBodies[0], rows = Array.from(body.rows);\n"
    "  const key = r => numeric ? Number(r.cells[col].dataset.value) : r.cells[col].textContent;\n"
    "  rows.sort((a, b) => {\n"
    "    const x = key(a), y = key(b);\n"
    "    const c = x < y ? -1 : x > y ? 1 : 0;\n"
    "    return dir === 'asc' ? c : -c;\n"
    "  });\n"
    "  for (const r of rows) body.append(r);\n"
    "}\n"
    "function category(id, cat) {\n"
    "  const sec = el('section', {id: id}, el('h2', {}, cat.title));\n"
    "  if (cat.entries.length === 0) {\n"
    "    sec.append(el('p', {class: 'none'}, 'none exercised'));\n"
    "    return sec;\n"
    "  }\n"
    "  const hits = id === 'disk_faults';\n"
    "  const cols = [['name', false], [cat.unit, true], ['tests', true]];\n"
    "  if (hits) cols.push(['hits', true]);\n"
    "  cols.push(['results', false]);\n"
    "  const head = el('tr', {});\n"
    "  const table = el('table', {class: 'sortable', 'data-category': id}, el('thead', {}, head),\n"
    "                   el('tbody', {}));\n"
    "  cols.forEach(([name, numeric], i) => {\n"
    "    const th = el('th', {}, name);\n"
    "    th.addEventListener('click', () => sortBy(table, i, numeric, th));\n"
    "    head.append(th);\n"
    "  });\n"
    "  for (const e of cat.entries) {\n"
    "    const tests = el('details', {}, el('summary', {}, String(e.tests.length)),\n"
    "                     el('ul', {}, ...e.tests.map(t => el('li', {}, t))));\n"
    "    const row = el('tr', {'data-entry': id + ':' + e.name},\n"
    "      el('td', {class: 'name'}, e.name),\n"
    "      el('td', {class: 'calls', 'data-value': e.calls}, String(e.calls)),\n"
    "      el('td', {class: 'ntests', 'data-value': e.tests.length}, tests));\n"
    "    if (hits) row.append(el('td', {class: 'hits', 'data-value': e.hits}, String(e.hits)));\n"
    "    row.append(el('td', {class: 'results'}, results(e.results)));\n"
    "    table.tBodies[0].append(row);\n"
    "  }\n"
    "  sec.append(table);\n"
    "  sortBy(table, 1, true, head.cells[1]);\n"
    "  return sec;\n"
    "}\n"
    "const report = document.getElementById('report');\n"
    "report.textContent = '';\n"
    "let total = 0;\n"
    "for (const [id, cat] of Object.entries(data.categories)) {\n"
    "  report.append(category(id, cat));\n"
    "  total += cat.entries.length;\n"
    "}\n"
    "if (data.unexercised) {\n"
    "  const u = data.unexercised.syscalls;\n"
    "  report.append(el('section', {id: 'unexercised'},\n"
    "    el('h2', {}, 'syscalls no test made: ' + u.names.length + ' of ' + u.total),\n"
    "    el('p', {class: 'names'}, u.names.join(' '))));\n"
    "}\n"
    "document.getElementById('summary').textContent = data.events + ' events, ' + total +\n"
    "  ' entries' + (data.unattributed ? ', ' + data.unattributed +\n"
    "  ' counted for no test (they name no file)' : '');\n"
    "document.body.dataset.ready = 'yes';\n"
    "</script>\n</body>\n</html>\n";

/* The JSON document, with '<' as \u003c so that no "</script>" can end the block (a '<' can
 * only be inside a string there). */
static int write_data(FILE *out, const CoverageReport *rep)
{
        char *json = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&json, &len);
        if (!mem)
                return -ENOMEM;
        int r = coverage_json_write(mem, rep);
        if (fclose(mem) != 0 && r == 0)
                r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < len; i++)
                if (json[i] == '<')
                        fputs("\\u003c", out);
                else
                        fputc(json[i], out);
        free(json);
        return r;
}

int coverage_html_write(const char *dir, const CoverageReport *rep, char *err, size_t errlen)
{
        if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
                int e = errno;
                snprintf(err, errlen, "%s: %s", dir, strerror(e));
                return -e;
        }
        char path[4096];
        if ((size_t) snprintf(path, sizeof path, "%s/index.html", dir) >= sizeof path) {
                snprintf(err, errlen, "%s: path too long", dir);
                return -ENAMETOOLONG;
        }
        FILE *out = fopen(path, "w");
        if (!out) {
                int e = errno;
                snprintf(err, errlen, "%s: %s", path, strerror(e));
                return -e;
        }
        fputs(page_head, out);
        int r = write_data(out, rep);
        fputs(page_tail, out);
        if (ferror(out) && r == 0)
                r = -EIO;
        if (fclose(out) != 0 && r == 0)
                r = -errno;
        if (r < 0)
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return r;
}
