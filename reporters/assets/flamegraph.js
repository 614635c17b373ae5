/* flamegraph.js: builds memtrace's flame graph page from the JSON in
 * #mt-data (its format is at the top of reporters/flamegraph.c): the facts
 * of the capture, the heap and RSS over time on a canvas, and an icicle
 * graph (root at the top) with tooltips, zoom, search, and toggles that
 * fold import-time frames and hide native frames.
 *
 * Names come from the profiled program and may hold anything, markup
 * included: they only ever reach the page through textContent (never
 * innerHTML or attributes that are parsed), so they show as text. */
(function () {
  'use strict';

  var FG_PYTHON = 1, FG_INLINED = 2, FG_IMPORT = 4, FG_OTHER = 8;
  var FG_FOLDED = 16; /* page only: the "[import time]" box */
  var ROW = 18;

  var data = JSON.parse(document.getElementById('mt-data').textContent);

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* The same sizes as `memtrace report`: "512 B", "1.5 KiB", "12.3 MiB". */
  function formatSize(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
    if (n < 1024) return n + ' B';
    var u = 0;
    while (n >= 1024 && u < 6) { n /= 1024; u++; }
    if (n >= 1023.95 && u < 6) { n /= 1024; u++; }
    return n.toFixed(1) + ' ' + units[u];
  }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  /* Rounded down, so that only the whole is "100%" and nothing is "0%". */
  function share(part, whole) {
    if (!(whole > 0) || !(part > 0)) return '0%';
    if (part >= whole) return '100%';
    var p = 100 * part / whole;
    return p < 0.1 ? '<0.1%' : (Math.floor(p * 10) / 10).toFixed(1) + '%';
  }

  function seconds(ns) {
    var s = ns / 1e9;
    return (s < 10 ? s.toFixed(3) : s.toFixed(1)) + ' s';
  }

  function baseName(path) {
    var i = path.lastIndexOf('/');
    return i >= 0 ? path.slice(i + 1) : path;
  }

  var VIEWS = {
    peak: ['High-water mark', 'memory live when the traced heap was largest'],
    leaks: ['Leaks', 'memory still live when tracing ended'],
    temporary: ['Temporary allocations',
                'allocations freed before any other allocation was made'],
    all: ['All allocations', 'everything allocated over the run']
  };
  var view = VIEWS[data.view] || VIEWS.peak;

  /* ---- The tree as the capture gave it ------------------------------- */

  var raw = data.nodes.map(function (r, i) {
    return {
      id: i, parent: r[0], name: data.strings[r[1]] || '',
      file: data.strings[r[2]] || '', line: r[3], bytes: r[4], count: r[5],
      flags: r[6], selfBytes: r[4], selfCount: r[5]
    };
  });
  raw.forEach(function (n) {
    if (n.parent >= 0) {
      raw[n.parent].selfBytes -= n.bytes;
      raw[n.parent].selfCount -= n.count;
    }
  });
  var total = raw.length ? raw[0].bytes : 0;
  var totalCount = raw.length ? raw[0].count : 0;
  /* Width stands for bytes, or for allocations when no byte is held. */
  var metric = total > 0 ? 'bytes' : 'count';
  var hasPython = raw.some(function (n) { return n.flags & FG_PYTHON; });
  var hasImports = raw.some(function (n) { return n.flags & FG_IMPORT; });
  var hasNative = raw.some(function (n, i) {
    return i > 0 && !(n.flags & (FG_PYTHON | FG_OTHER));
  });
  /* A --native capture of Python: stacks mix both kinds of frames. */
  var mixed = !!data.native && hasPython && hasNative;

  /* ---- The tree as shown: with frames folded or hidden ---------------- */

  function keyOf(n) {
    return n.name + '\u0000' + n.file + '\u0000' +
      ((n.flags & FG_OTHER) ? '' : n.line) + '\u0000' +
      (n.flags & (FG_PYTHON | FG_OTHER | FG_FOLDED));
  }

  function makeNode(parent, src) {
    return {
      parent: parent, name: src.name, file: src.file, line: src.line,
      flags: src.flags, key: keyOf(src), bytes: 0, count: 0,
      selfBytes: 0, selfCount: 0, children: [], byKey: Object.create(null)
    };
  }

  /* The child of parent that src merges into, created when new. */
  function childOf(parent, src, created) {
    var k = keyOf(src), c = parent.byKey[k];
    if (c) {
      if (src.flags & FG_OTHER) c.line += src.line; /* frames it sums */
      return c;
    }
    c = makeNode(parent, src);
    parent.byKey[k] = c;
    parent.children.push(c);
    created.push(c);
    return c;
  }

  var IMPORT_BOX = {name: '[import time]', file: '', line: 0,
                    flags: FG_IMPORT | FG_FOLDED | FG_PYTHON};

  /* Rebuilds the shown tree. Hidden native frames give their place to
   * their callees; a folded import frame becomes one "[import time]" box
   * holding everything below it. Parents come before children in raw, so
   * one pass maps every node. */
  function buildTree(hideImports, hideNative) {
    if (!raw.length) return null;
    var root = makeNode(null, raw[0]);
    var created = [root];
    var shown = new Array(raw.length), folded = new Uint8Array(raw.length);
    shown[0] = root;
    for (var i = 1; i < raw.length; i++) {
      var r = raw[i], up = shown[r.parent], v;
      if (folded[r.parent]) {
        v = up;
        folded[i] = 1;
      } else if (hideImports && (r.flags & FG_IMPORT)) {
        v = childOf(up, IMPORT_BOX, created);
        folded[i] = 1;
      } else if (hideNative && !(r.flags & (FG_PYTHON | FG_OTHER))) {
        v = up;
      } else {
        v = childOf(up, r, created);
      }
      shown[i] = v;
    }
    root.line = 0;
    for (i = 0; i < raw.length; i++) {
      shown[i].selfBytes += raw[i].selfBytes;
      shown[i].selfCount += raw[i].selfCount;
    }
    for (i = created.length - 1; i >= 0; i--) {
      var n = created[i];
      n.bytes += n.selfBytes;
      n.count += n.selfCount;
      if (n.parent) {
        n.parent.bytes += n.bytes;
        n.parent.count += n.count;
      }
    }
    created.forEach(function (n) {
      n.children.sort(function (a, b) {
        if ((a.flags & FG_OTHER) !== (b.flags & FG_OTHER))
          return (a.flags & FG_OTHER) ? 1 : -1;
        return b[metric] - a[metric] || b.count - a.count ||
          (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      });
    });
    return root;
  }

  /* ---- Page header ---------------------------------------------------- */

  function fact(dl, name, value) {
    dl.appendChild(el('dt', null, name));
    dl.appendChild(el('dd', null, value));
  }

  function fillHeader() {
    var name = baseName(data.capture || '');
    $('title').textContent = 'memtrace flame graph: ' + name;
    document.title = 'memtrace flame graph: ' + name + ' (' + view[0] + ')';
    var dl = $('facts');
    fact(dl, 'Capture', data.capture || '');
    fact(dl, 'Command', data.command || '');
    fact(dl, 'Peak heap', formatSize(data.peak_bytes) + ' at ' +
         seconds(data.peak_time_ns));
    fact(dl, 'Peak RSS', formatSize(data.peak_rss_bytes));
    fact(dl, 'Duration', seconds(data.duration_ns));
    if (data.window)
      fact(dl, 'Window', seconds(data.window[0]) + ' to ' +
           seconds(data.window[1]) + (data.window[3] ? ' (exact edges, at ' +
           'stage marks)' : ' (edges at RSS samples)'));
    if (data.processes > 1)
      fact(dl, 'Processes', data.processes + ' combined; the peak is ' +
           'that of their summed heaps');
    fact(dl, 'View', view[0] + ': ' + view[1]);
    fact(dl, 'Shown', formatSize(total) + ' in ' +
         plural(totalCount, 'allocation', 'allocations'));
    if (data.warning) {
      $('warning').textContent = data.warning;
      $('warning').hidden = false;
    }
    $('flame-heading').textContent = 'Flame graph: ' + view[0].toLowerCase();
  }

  /* ---- Timeline ------------------------------------------------------- */

  var chartPoints = [];

  function drawChart() {
    var canvas = $('chart');
    var samples = data.samples || [];
    if (!samples.length) {
      $('chart-box').hidden = true;
      $('chart-empty').hidden = false;
      return;
    }
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 800, h = 180;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var left = 74, right = 12, top = 10, bottom = 22;
    var pw = Math.max(10, w - left - right), ph = h - top - bottom;
    /* The heap line goes through the high-water mark itself: ticks are
     * taken every few milliseconds and may miss the top. */
    var heap = samples.map(function (s) { return [s[0], s[1]]; });
    /* A window's chart starts where the window does, at its heap. */
    var t0 = data.window ? data.window[0] : 0;
    heap.push([t0, data.window ? data.window[2] : 0],
              [data.peak_time_ns, data.peak_bytes]);
    heap.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    var tmax = Math.max(data.window ? data.window[1] : data.duration_ns,
                        data.peak_time_ns, samples[samples.length - 1][0],
                        t0 + 1);
    var ymax = data.peak_bytes;
    samples.forEach(function (s) { ymax = Math.max(ymax, s[1], s[2]); });
    ymax = Math.max(ymax * 1.08, 1);
    function X(t) { return left + pw * (t - t0) / (tmax - t0); }
    function Y(b) { return top + ph - ph * b / ymax; }
    var style = getComputedStyle(document.documentElement);
    ctx.font = '11px sans-serif';
    ctx.strokeStyle = '#d5d9e2';
    ctx.fillStyle = '#5d6678';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (var i = 0; i <= 4; i++) {
      var b = ymax * i / 4, y = Math.round(Y(b)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
      ctx.fillText(formatSize(Math.round(b)), left - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (i = 0; i <= 5; i++) {
      var t = t0 + (tmax - t0) * i / 5;
      ctx.fillText(seconds(t), Math.min(X(t), left + pw - 20), top + ph + 5);
    }
    /* Heap: a filled area; RSS: a line. */
    ctx.beginPath();
    ctx.moveTo(X(heap[0][0]), Y(0));
    heap.forEach(function (p) { ctx.lineTo(X(p[0]), Y(p[1])); });
    ctx.lineTo(X(heap[heap.length - 1][0]), Y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.25;
    ctx.fillStyle = style.getPropertyValue('--heap') || '#d9480f';
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.strokeStyle = ctx.fillStyle;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    heap.forEach(function (p, k) {
      if (k) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1]));
    });
    ctx.stroke();
    ctx.strokeStyle = style.getPropertyValue('--rss') || '#1c7ed6';
    ctx.beginPath();
    samples.forEach(function (s, k) {
      if (k) ctx.lineTo(X(s[0]), Y(s[2])); else ctx.moveTo(X(s[0]), Y(s[2]));
    });
    ctx.stroke();
    if (samples.length < 50) {
      ctx.fillStyle = ctx.strokeStyle;
      samples.forEach(function (s) {
        ctx.beginPath(); ctx.arc(X(s[0]), Y(s[2]), 2.5, 0, 2 * Math.PI); ctx.fill();
      });
    }
    /* The high-water mark. */
    var px = X(data.peak_time_ns), py = Y(data.peak_bytes);
    ctx.strokeStyle = style.getPropertyValue('--peak') || '#c92a2a';
    ctx.fillStyle = ctx.strokeStyle;
    ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + ph); ctx.stroke();
    ctx.setLineDash([]);
    ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI); ctx.fill();
    var label = 'peak ' + formatSize(data.peak_bytes);
    ctx.font = 'bold 11px sans-serif';
    ctx.textBaseline = 'bottom';
    var tw = ctx.measureText(label).width;
    ctx.textAlign = px + 8 + tw > left + pw ? 'right' : 'left';
    ctx.fillText(label, ctx.textAlign === 'left' ? px + 8 : px - 8,
                 Math.max(py - 3, top + 12));
    chartPoints = samples.map(function (s) { return {x: X(s[0]), s: s}; });
  }

  function chartTip(ev) {
    if (!chartPoints.length) return;
    var r = $('chart').getBoundingClientRect(), x = ev.clientX - r.left;
    var best = chartPoints[0];
    chartPoints.forEach(function (p) {
      if (Math.abs(p.x - x) < Math.abs(best.x - x)) best = p;
    });
    showTip(ev, [['fn', 'at ' + seconds(best.s[0])],
                 [null, 'traced heap: ' + formatSize(best.s[1])],
                 [null, 'RSS: ' + formatSize(best.s[2])]]);
  }

  /* ---- Flame graph ---------------------------------------------------- */

  var state = {
    root: null, zoom: null, query: '',
    hideImports: !!data.hide_imports,
    hideNative: !!data.hide_native && mixed
  };
  var drawn = [];

  function hashOf(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  /* Warm colours, stable per function: Python frames orange to yellow,
   * native frames red to orange, import time green. */
  function colorOf(n) {
    if (!n.parent) return '#adb5bd';
    var h = hashOf(n.name), v = (h % 1000) / 1000;
    if (n.flags & FG_IMPORT) return 'hsl(' + (95 + 30 * v) + ',45%,' + (62 + 10 * v) + '%)';
    if (n.flags & FG_PYTHON) return 'hsl(' + (32 + 22 * v) + ',90%,' + (60 + 10 * v) + '%)';
    var light = (n.flags & FG_INLINED) ? 72 : 62;
    return 'hsl(' + (4 + 26 * v) + ',80%,' + (light + 8 * v) + '%)';
  }

  function labelOf(n) {
    if (!n.parent) return 'all: ' + formatSize(n.bytes);
    if (n.flags & FG_OTHER) return 'other (' + plural(n.line, 'frame', 'frames') + ')';
    return n.name;
  }

  function locationOf(n) {
    if (!n.file) return '';
    return n.line ? n.file + ':' + n.line : n.file;
  }

  function matches(n) {
    var q = state.query;
    return !!q && !!n.parent && (n.name.toLowerCase().indexOf(q) >= 0 ||
                                 n.file.toLowerCase().indexOf(q) >= 0);
  }

  function pathTo(n) {
    var chain = [];
    for (; n; n = n.parent) chain.unshift(n);
    return chain;
  }

  function addBox(frag, n, x, w, depth, cls) {
    var d = el('div', 'fg-node' + (cls ? ' ' + cls : ''), labelOf(n));
    if (n.flags & FG_OTHER) d.classList.add('other');
    else d.style.background = colorOf(n);
    if (matches(n)) d.classList.add('match');
    d.style.left = x + 'px';
    d.style.width = Math.max(w, 1) + 'px';
    d.style.top = depth * ROW + 'px';
    d.setAttribute('role', 'treeitem');
    d.setAttribute('data-i', String(drawn.length));
    drawn.push(n);
    frag.appendChild(d);
  }

  function render() {
    var box = $('flame');
    box.textContent = '';
    drawn = [];
    var root = state.root;
    if (!root || !(root[metric] > 0)) {
      $('flame-empty').hidden = false;
      box.style.height = '0px';
      renderBreadcrumb();
      return;
    }
    $('flame-empty').hidden = true;
    var width = box.clientWidth || 1000;
    var frag = document.createDocumentFragment();
    var chain = pathTo(state.zoom);
    for (var i = 0; i < chain.length - 1; i++)
      addBox(frag, chain[i], 0, width, i, 'ancestor');
    var zoom = state.zoom, depth0 = chain.length - 1, maxDepth = depth0;
    var scale = zoom[metric] > 0 ? width / zoom[metric] : 0;
    var stack = [[zoom, 0, depth0]];
    while (stack.length) {
      var item = stack.pop(), n = item[0], x = item[1], d = item[2];
      var w = n === zoom ? width : n[metric] * scale;
      if (w < 1) continue; /* too narrow to see or to click */
      addBox(frag, n, x, w, d, n === zoom ? 'zoomed' : '');
      if (d > maxDepth) maxDepth = d;
      var cx = x;
      for (var k = 0; k < n.children.length; k++) {
        stack.push([n.children[k], cx, d + 1]);
        cx += n.children[k][metric] * scale;
      }
    }
    box.style.height = (maxDepth + 1) * ROW + 'px';
    box.appendChild(frag);
    renderBreadcrumb();
  }

  function renderBreadcrumb() {
    var nav = $('breadcrumb');
    nav.textContent = '';
    if (!state.zoom) return;
    var chain = pathTo(state.zoom);
    chain.forEach(function (n, i) {
      if (i) nav.appendChild(el('span', 'sep', '\u203a'));
      var text = n.parent ? labelOf(n) : 'all';
      if (i === chain.length - 1) {
        nav.appendChild(el('span', 'current', text));
      } else {
        var b = el('button', null, text);
        b.type = 'button';
        b.addEventListener('click', function () { zoomTo(n); });
        nav.appendChild(b);
      }
    });
  }

  function zoomTo(n) {
    state.zoom = n || state.root;
    hideTip();
    render();
  }

  /* ---- Tooltip -------------------------------------------------------- */

  function showTip(ev, lines) {
    var tip = $('tooltip');
    tip.textContent = '';
    lines.forEach(function (l) {
      if (l[1] !== '') tip.appendChild(el('div', l[0], l[1]));
    });
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 4) x = Math.max(4, ev.clientX - r.width - 14);
    if (y + r.height > window.innerHeight - 4) y = Math.max(4, ev.clientY - r.height - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }

  function hideTip() { $('tooltip').hidden = true; }

  function nodeTip(ev, n) {
    var kind = [];
    if (n.flags & FG_OTHER) kind.push('frames under ' + (data.threshold * 100) + '% of the total each, merged');
    else if (n.flags & FG_FOLDED) kind.push('import-time frames, folded');
    else if (n.parent) {
      kind.push((n.flags & FG_PYTHON) ? 'Python frame' : 'native frame');
      if (n.flags & FG_INLINED) kind.push('inlined');
      if (n.flags & FG_IMPORT) kind.push('import time');
    }
    var zoomShare = state.zoom && state.zoom !== state.root && n !== state.zoom
      ? ', ' + share(n.bytes, state.zoom.bytes) + ' of the zoomed frame' : '';
    showTip(ev, [
      ['fn', n.parent ? ((n.flags & FG_OTHER) ? labelOf(n) : n.name) : 'all (' + view[0].toLowerCase() + ')'],
      ['loc', locationOf(n)],
      [null, formatSize(n.bytes) + ' (' + n.bytes + ' bytes) in ' +
             plural(n.count, 'allocation', 'allocations')],
      [null, share(n.bytes, state.root.bytes) + ' of the total' + zoomShare],
      ['tag', kind.join(', ')]
    ]);
  }

  function boxNode(target) {
    var i = target && target.getAttribute && target.getAttribute('data-i');
    return i === null || i === undefined ? null : drawn[+i];
  }

  /* ---- Search --------------------------------------------------------- */

  function runSearch() {
    state.query = $('search').value.trim().toLowerCase();
    var info = $('match-info');
    if (!state.query || !state.root) {
      info.textContent = '';
      render();
      return;
    }
    /* The matched share counts each byte once: below a match, nested
     * matches add nothing. */
    var frames = 0, bytes = 0, stack = [[state.root, false]];
    while (stack.length) {
      var item = stack.pop(), n = item[0], inside = item[1], m = matches(n);
      if (m) frames++;
      if (m && !inside) bytes += n.bytes;
      n.children.forEach(function (c) { stack.push([c, inside || m]); });
    }
    info.textContent = frames
      ? plural(frames, 'frame matches', 'frames match') + ': ' +
        formatSize(bytes) + ' (' + share(bytes, state.root.bytes) + ' of the total)'
      : 'no match';
    render();
  }

  /* ---- Wiring --------------------------------------------------------- */

  function rebuild() {
    /* Keep the zoom on the same frame path when it still exists. */
    var keys = state.zoom ? pathTo(state.zoom).slice(1).map(function (n) { return n.key; }) : [];
    state.root = buildTree(state.hideImports, state.hideNative);
    var z = state.root;
    for (var i = 0; z && i < keys.length; i++) {
      var next = z.children.filter(function (c) { return c.key === keys[i]; })[0];
      if (!next) break;
      z = next;
    }
    state.zoom = z;
    runSearch();
  }

  function setup() {
    fillHeader();
    var notes = 'Box width is ' + (metric === 'bytes' ? 'bytes' : 'allocations') +
      ' in this view; callers above callees. Click a box to zoom in; ' +
      'click a row above it, the path or "Reset zoom" (or press Escape) to go back. ' +
      'Frames holding less than ' + (data.threshold * 100) + '% of the total are merged ' +
      'into one "other" box per caller';
    notes += data.merged ? ' (' + plural(data.merged, 'frame', 'frames') + ' merged).' : ' (none here).';
    if (data.filter) {
      var f = [];
      data.filter.include.forEach(function (g) { f.push('--include ' + g); });
      data.filter.exclude.forEach(function (g) { f.push('--exclude ' + g); });
      notes += ' Filtered with ' + f.join(' ') + ': only the allocations it keeps are shown.';
    }
    $('notes').textContent = notes;

    var imports = $('hide-imports'), native = $('show-native');
    imports.checked = state.hideImports;
    $('imports-toggle').hidden = !(hasImports || data.python);
    imports.addEventListener('change', function () {
      state.hideImports = imports.checked;
      rebuild();
    });
    $('native-toggle').hidden = !mixed;
    native.checked = !state.hideNative;
    native.addEventListener('change', function () {
      state.hideNative = !native.checked;
      rebuild();
    });

    var timer = null;
    $('search').addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(runSearch, 120);
    });
    $('reset').addEventListener('click', function () { zoomTo(state.root); });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') zoomTo(state.root);
    });

    var flame = $('flame');
    flame.addEventListener('mousemove', function (ev) {
      var n = boxNode(ev.target);
      if (n) nodeTip(ev, n); else hideTip();
    });
    flame.addEventListener('mouseleave', hideTip);
    flame.addEventListener('click', function (ev) {
      var n = boxNode(ev.target);
      if (n) zoomTo(n);
    });
    var chart = $('chart');
    chart.addEventListener('mousemove', chartTip);
    chart.addEventListener('mouseleave', hideTip);

    var resizeTimer = null;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { drawChart(); render(); }, 100);
    });
    drawChart();
    rebuild();
  }

  setup();
})();
