/* memlens HTML report: flame graph, timeline and tables, from the JSON
 * report embedded in the page (schema: memlens/report/jsonfmt.py).  No
 * external resources. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("memlens-data").textContent);
  var ROW = 18;

  function fmt(n) {
    var units = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  /* The names as the page shows them, one entry per distinct frame and
   * class, built by html.py: escaped, the middle of a long name elided.
   * data.frames keeps them as recorded (for the search). */
  var SHOWN = data.shown.frames;
  function frameLabel(i) { return SHOWN[i][0]; }
  function frameWhere(i) { return SHOWN[i][1]; }

  /* At most this many rows are drawn: a hostile or runaway stack must not
   * make a page of 25,000 rows (a --frames 512 capture fits).  Below them
   * one row says how many frames are left; clicking a frame zooms in. */
  var MAX_ROWS = 1000;
  /* Ancestors of the zoomed frame drawn above it: the root and the last few. */
  var MAX_CHAIN = 12;

  var VIEW_KEYS = { peak: "peak", leaks: "exit", allocated: "allocated" };

  /* Tree of frames, outermost at the root; a node's kids are keyed by frame
   * index.  Built, sorted and measured without recursion: a stack may be
   * thousands of frames deep.  n.h: rows from n down to its deepest leaf. */
  function buildTree(view) {
    var k = VIEW_KEYS[view];
    var root = { frame: -1, name: "all", full: "all", bytes: 0, blocks: 0, kids: new Map(),
                 list: null, parent: null, h: 1 };
    data.stacks.forEach(function (s) {
      var b = s[k + "_bytes"], n = s[k + "_blocks"];
      if (!b) { return; }
      root.bytes += b; root.blocks += n;
      var node = root, len = s.frames.length;
      root.h = Math.max(root.h, len + 1);
      for (var i = len - 1; i >= 0; i--) {
        var fi = s.frames[i];
        var kid = node.kids.get(fi);
        if (!kid) {
          kid = { frame: fi, name: frameLabel(fi), full: frameWhere(fi), bytes: 0, blocks: 0,
                  kids: new Map(), list: null, parent: node, h: 1 };
          node.kids.set(fi, kid);
        }
        kid.bytes += b; kid.blocks += n;
        kid.h = Math.max(kid.h, i + 1);
        node = kid;
      }
    });
    var todo = [root];
    while (todo.length) {
      var n = todo.pop();
      n.list = Array.from(n.kids.values());
      n.list.sort(function (a, b) { return b.bytes - a.bytes || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0); });
      for (var j = 0; j < n.list.length; j++) { todo.push(n.list[j]); }
    }
    return root;
  }

  var flame = document.getElementById("flame");
  var tip = document.getElementById("tip");
  var crumbs = document.getElementById("crumbs");
  var search = document.getElementById("search");
  var state = { view: data.default_view, root: null, zoom: null };

  function color(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) >>> 0; }
    return "hsl(" + (10 + h % 40) + ",80%," + (55 + h % 15) + "%)";
  }

  /* Does frame i match the search?  Worked out once per frame and query,
   * not once per node. */
  var matchQuery = null, matchCache = null;
  function matches(q, fi) {
    if (fi < 0) { return false; }
    if (q !== matchQuery) { matchQuery = q; matchCache = new Map(); }
    var m = matchCache.get(fi);
    if (m === undefined) {
      var f = data.frames[fi];
      m = (f.file + ":" + f.line + " " + f.function).toLowerCase().indexOf(q) >= 0;
      matchCache.set(fi, m);
    }
    return m;
  }

  function render() {
    flame.textContent = "";
    var zoom = state.zoom, root = state.root;
    if (!root.bytes) {
      flame.style.height = "40px";
      flame.appendChild(el("div", { "class": "note", style: "padding:10px" }, "Nothing in this view."));
      crumbs.textContent = "";
      return;
    }
    /* Ancestors of the zoomed node span the full width above it: the root
     * and the nearest ones, the others counted in one row. */
    var chain = [];
    for (var a = zoom; a; a = a.parent) { chain.unshift(a); }
    var hidden = 0;
    if (chain.length > MAX_CHAIN) {
      hidden = chain.length - MAX_CHAIN + 1;
      chain = [chain[0], null].concat(chain.slice(hidden + 1));
    }
    var rows = chain.length - 1 + zoom.h;
    var drawn = Math.min(rows, MAX_ROWS);
    flame.style.height = ((drawn + (rows > drawn ? 1 : 0)) * ROW + 4) + "px";
    var W = flame.clientWidth || 1000;
    var q = (search.value || "").toLowerCase();
    function box(n, x, w, d) {
      var div = el("div", { "class": "fr", "data-name": n.name });
      div.style.left = x + "px"; div.style.width = Math.max(w, 1) + "px";
      div.style.top = (d * ROW) + "px"; div.style.background = color(n.name);
      if (w > 30) { div.textContent = n.name; }
      if (q && matches(q, n.frame)) { div.className += " match"; }
      div.__node = n;
      flame.appendChild(div);
    }
    function note(d, text) {
      var div = el("div", { "class": "fr-more" }, text);
      div.style.left = "0px"; div.style.width = W + "px"; div.style.top = (d * ROW) + "px";
      flame.appendChild(div);
    }
    chain.forEach(function (n, d) {
      if (n) { box(n, 0, W, d); } else { note(d, "... " + hidden + " more frames"); }
    });
    /* Depth first, without recursion: [node, x, width, row]. */
    var todo = [[zoom, 0, W, chain.length]];
    while (todo.length) {
      var t = todo.pop(), n = t[0], cx = t[1], w = t[2], d = t[3];
      if (d >= drawn) { continue; }
      for (var i = 0; i < n.list.length; i++) {
        var k = n.list[i], kw = w * k.bytes / n.bytes;
        if (kw >= 0.5) { box(k, cx, kw, d); todo.push([k, cx, kw, d + 1]); }
        cx += kw;
      }
    }
    if (rows > drawn) { note(drawn, "... " + (rows - drawn) + " more frames: click a frame to zoom in"); }
    crumbs.textContent = "";
    chain.forEach(function (n, i) {
      if (i) { crumbs.appendChild(document.createTextNode(" \u203a ")); }
      if (!n) { crumbs.appendChild(document.createTextNode("... " + hidden + " more frames")); return; }
      var a = el("a", {}, n.name); a.__node = n; crumbs.appendChild(a);
    });
    var pct = root.bytes ? (100 * zoom.bytes / root.bytes).toFixed(1) : "0";
    crumbs.appendChild(document.createTextNode("  \u2014 " + fmt(zoom.bytes) + " (" + pct + "% of view)"));
  }

  function setView(v) {
    state.view = v;
    state.root = buildTree(v);
    state.zoom = state.root;
    Array.prototype.forEach.call(document.querySelectorAll(".tabs button"), function (b) {
      b.className = b.getAttribute("data-view") === v ? "active" : "";
    });
    render();
    renderLines();
  }

  flame.addEventListener("click", function (e) {
    var n = e.target.__node;
    if (n) { state.zoom = n; render(); }
  });
  crumbs.addEventListener("click", function (e) {
    if (e.target.__node) { state.zoom = e.target.__node; render(); }
  });
  flame.addEventListener("mousemove", function (e) {
    var n = e.target.__node;
    if (!n) { tip.style.display = "none"; return; }
    var pct = state.root.bytes ? (100 * n.bytes / state.root.bytes).toFixed(1) : "0";
    tip.textContent = n.full + "\n" + fmt(n.bytes) + " (" + n.bytes + " bytes, " + pct + "%), " +
      n.blocks + " blocks";
    tip.style.whiteSpace = "pre-line";
    tip.style.display = "block";
    tip.style.left = Math.min(e.clientX + 12, window.innerWidth - 400) + "px";
    tip.style.top = (e.clientY + 12) + "px";
  });
  flame.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  search.addEventListener("input", render);
  Array.prototype.forEach.call(document.querySelectorAll(".tabs button"), function (b) {
    b.addEventListener("click", function () { setView(b.getAttribute("data-view")); });
  });
  window.addEventListener("resize", render);

  /* Top lines of the current view. */
  function renderLines() {
    var k = VIEW_KEYS[state.view], acc = {};
    data.stacks.forEach(function (s) {
      if (!s[k + "_bytes"] || !s.frames.length) { return; }
      var fi = s.frames[0], f = data.frames[fi], key = SHOWN[fi][4];
      var a = acc[key] || (acc[key] = { f: f, shown: SHOWN[fi], bytes: 0, blocks: 0 });
      a.bytes += s[k + "_bytes"]; a.blocks += s[k + "_blocks"];
    });
    var rows = Object.keys(acc).map(function (x) { return acc[x]; });
    rows.sort(function (a, b) { return b.bytes - a.bytes; });
    var tb = document.querySelector("#lines tbody");
    tb.textContent = "";
    rows.slice(0, 30).forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "num" }, fmt(r.bytes)));
      tr.appendChild(el("td", { "class": "num" }, String(r.blocks)));
      tr.appendChild(el("td", {}, r.shown[4]));
      tr.appendChild(el("td", {}, r.shown[3]));
      tb.appendChild(tr);
    });
  }

  /* Timeline: traced bytes (and their native share) and RSS, peak marked. */
  function renderTimeline() {
    var box = document.getElementById("timeline"), t = data.timeline;
    if (!t.t_s.length) { box.appendChild(el("p", { "class": "note" }, "No timeline in this capture.")); return; }
    var W = 900, H = 220, L = 70, B = 24, ns = "http://www.w3.org/2000/svg";
    var tmax = Math.max(t.t_s[t.t_s.length - 1], 1e-3);
    var ymax = Math.max.apply(null, t.rss.concat(t.traced).concat([1, data.totals.peak_bytes || 0]));
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    function X(v) { return L + (W - L - 10) * v / tmax; }
    function Y(v) { return H - B - (H - B - 10) * v / ymax; }
    function line(vals, colr, label) {
      var d = vals.map(function (v, i) { return (i ? "L" : "M") + X(t.t_s[i]).toFixed(1) + "," + Y(v).toFixed(1); }).join("");
      var p = document.createElementNS(ns, "path");
      p.setAttribute("d", d); p.setAttribute("fill", "none"); p.setAttribute("stroke", colr);
      p.setAttribute("stroke-width", "1.5");
      var ti = document.createElementNS(ns, "title"); ti.textContent = label; p.appendChild(ti);
      svg.appendChild(p);
    }
    function text(x, y, s, anchor) {
      var e = document.createElementNS(ns, "text");
      e.setAttribute("x", x); e.setAttribute("y", y); e.setAttribute("font-size", "11");
      if (anchor) { e.setAttribute("text-anchor", anchor); }
      e.textContent = s; svg.appendChild(e);
      return e;
    }
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4;
      text(L - 6, Y(v) + 4, fmt(v), "end");
      /* The last time label ends at the right edge instead of centring on it. */
      text(i < 4 ? X(tmax * i / 4) : W - 2, H - 6, (tmax * i / 4).toFixed(2) + " s", i < 4 ? "middle" : "end");
    }
    if (t.rss.some(function (v) { return v > 0; })) { line(t.rss, "#999", "RSS"); }
    line(t.traced, "#264d7a", "traced bytes");
    if (t.native) { line(t.native, "#e07b00", "of which native blocks"); }
    var label = null, px = 0;
    if (data.totals.peak_time_s !== null) {
      px = X(data.totals.peak_time_s);
      var mk = document.createElementNS(ns, "line");
      mk.setAttribute("x1", px); mk.setAttribute("x2", px); mk.setAttribute("y1", 10);
      mk.setAttribute("y2", H - B); mk.setAttribute("stroke", "#d32f2f");
      mk.setAttribute("stroke-dasharray", "4,3"); mk.setAttribute("id", "peak-marker");
      svg.appendChild(mk);
      /* The peak falls between two samples: the curve may not reach it, so
       * the peak's own value is marked with a dot at the first sample after. */
      var dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", px); dot.setAttribute("cy", Y(data.totals.peak_bytes));
      dot.setAttribute("r", 3.5); dot.setAttribute("fill", "#d32f2f");
      svg.appendChild(dot);
      label = text(px + 4, 20, "peak " + fmt(data.totals.peak_bytes) + " at " +
                   data.totals.peak_time_s.toFixed(2) + " s");
      label.setAttribute("id", "peak-label");
    }
    box.appendChild(svg);
    /* The label starts right of the marker; a peak near the right edge (the
     * last sample) puts it left of the marker instead, and neither may
     * leave the picture.  Measured once drawn: the width depends on the font. */
    if (label) { keepInside(label, px, W); }
    box.appendChild(el("div", { "class": "note" }, "blue: traced bytes" +
      (t.native ? "; orange: of which native blocks (C extensions' malloc/mmap)" : "") + "; grey: RSS; red: the peak"));
  }

  function keepInside(label, px, W) {
    var w = label.getComputedTextLength ? label.getComputedTextLength() : 0;
    if (px + 4 + w > W - 2) {
      label.setAttribute("x", px - 4); label.setAttribute("text-anchor", "end");
      if (px - 4 - w < 2) { label.setAttribute("x", 2); label.setAttribute("text-anchor", "start"); }
    }
  }

  function renderClasses() {
    var box = document.getElementById("classes");
    if (!data.classes) { box.style.display = "none"; return; }
    var tb = box.querySelector("tbody");
    var names = data.shown.classes;
    data.classes.map(function (c, i) { return [c, names[i]]; })
      .sort(function (a, b) { return b[0].bytes - a[0].bytes; }).slice(0, 30).forEach(function (p) {
      var c = p[0], tr = el("tr");
      tr.appendChild(el("td", { "class": "num" }, fmt(c.bytes)));
      tr.appendChild(el("td", { "class": "num" }, String(c.count)));
      tr.appendChild(el("td", {}, p[1]));
      tb.appendChild(tr);
    });
  }

  renderTimeline();
  renderClasses();
  setView(state.view);

  /* #selftest: click the widest frame below the root and check that the
   * graph zoomed into it; the result goes into the DOM for headless tests. */
  if (location.hash === "#selftest") {
    var out = el("div", { id: "selftest-result" });
    try {
      var frames = flame.querySelectorAll(".fr");
      var target = null;
      for (var i = 0; i < frames.length; i++) {
        if (frames[i].__node.parent === state.root) { target = frames[i]; break; }
      }
      if (!target) { throw new Error("no frame to click"); }
      var name = target.getAttribute("data-name");
      var before = flame.querySelectorAll(".fr").length;
      target.dispatchEvent(new MouseEvent("click", { bubbles: true }));
      var ok = state.zoom === target.__node && state.zoom.name === name &&
        crumbs.textContent.indexOf(name) >= 0;
      var zoomed = state.zoom.name, framesAfter = flame.querySelectorAll(".fr").length;
      /* Hover shows bytes and blocks of the frame under the pointer. */
      var shown = null;
      Array.prototype.forEach.call(flame.querySelectorAll(".fr"), function (e) {
        if (e.__node === state.zoom) { shown = e; }
      });
      if (!shown) { throw new Error("zoomed frame not drawn"); }
      var box = shown.getBoundingClientRect();
      shown.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: box.left + 2,
                                                         clientY: box.top + 2 }));
      var hover = tip.style.display === "block" && tip.textContent.indexOf("blocks") >= 0;
      /* Search highlights the matching frames. */
      search.value = name.split(" ")[0];
      search.dispatchEvent(new Event("input"));
      var matches = flame.querySelectorAll(".fr.match").length;
      /* The tabs switch the picture: the leaks view totals the bytes
       * still allocated at exit. */
      search.value = "";
      document.querySelector('button[data-view="leaks"]').click();
      var leaksBytes = state.view === "leaks" ? state.root.bytes : -1;
      ok = ok && hover && matches > 0 && leaksBytes >= 0;
      out.textContent = (ok ? "PASS" : "FAIL") + " zoomed=" + zoomed + " frames_before=" +
        before + " frames_after=" + framesAfter + " hover=" + hover +
        " matches=" + matches + " leaks_bytes=" + leaksBytes;
    } catch (err) {
      out.textContent = "FAIL " + err;
    }
    document.body.appendChild(out);
  }
})();
