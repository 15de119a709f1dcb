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
  function base(p) { var i = p.lastIndexOf("/"); return i < 0 ? p : p.slice(i + 1); }
  function frameLabel(i) {
    var f = data.frames[i];
    return f.function + " (" + base(f.file) + ":" + f.line + ")";
  }

  var VIEW_KEYS = { peak: "peak", leaks: "exit", allocated: "allocated" };

  /* Tree of frames, outermost at the root. */
  function buildTree(view) {
    var k = VIEW_KEYS[view];
    var root = { name: "all", full: "all", bytes: 0, blocks: 0, kids: {}, list: null, parent: null };
    data.stacks.forEach(function (s) {
      var b = s[k + "_bytes"], n = s[k + "_blocks"];
      if (!b) { return; }
      root.bytes += b; root.blocks += n;
      var node = root;
      for (var i = s.frames.length - 1; i >= 0; i--) {
        var key = frameLabel(s.frames[i]);
        var kid = node.kids[key];
        if (!kid) {
          var f = data.frames[s.frames[i]];
          kid = node.kids[key] = { name: key, full: f.file + ":" + f.line + " " + f.function,
                                   bytes: 0, blocks: 0, kids: {}, list: null, parent: node };
        }
        kid.bytes += b; kid.blocks += n;
        node = kid;
      }
    });
    (function sort(n) {
      n.list = Object.keys(n.kids).map(function (x) { return n.kids[x]; });
      n.list.sort(function (a, b) { return b.bytes - a.bytes || (a.name < b.name ? -1 : 1); });
      n.list.forEach(sort);
    })(root);
    return root;
  }

  var flame = document.getElementById("flame");
  var tip = document.getElementById("tip");
  var crumbs = document.getElementById("crumbs");
  var search = document.getElementById("search");
  var state = { view: data.default_view, root: null, zoom: null };

  function depth(n) { var d = 0; n.list.forEach(function (k) { d = Math.max(d, depth(k)); }); return d + 1; }
  function color(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) >>> 0; }
    return "hsl(" + (10 + h % 40) + ",80%," + (55 + h % 15) + "%)";
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
    /* Ancestors of the zoomed node span the full width above it. */
    var chain = [];
    for (var a = zoom; a; a = a.parent) { chain.unshift(a); }
    var rows = chain.length - 1 + depth(zoom);
    flame.style.height = (rows * ROW + 4) + "px";
    var W = flame.clientWidth || 1000;
    var q = (search.value || "").toLowerCase();
    function box(n, x, w, d) {
      var div = el("div", { "class": "fr", "data-name": n.name });
      div.style.left = x + "px"; div.style.width = Math.max(w, 1) + "px";
      div.style.top = (d * ROW) + "px"; div.style.background = color(n.name);
      if (w > 30) { div.textContent = n.name; }
      if (q && n.full.toLowerCase().indexOf(q) >= 0) { div.className += " match"; }
      div.__node = n;
      flame.appendChild(div);
    }
    chain.forEach(function (n, d) { box(n, 0, W, d); });
    (function lay(n, x, w, d) {
      var cx = x;
      n.list.forEach(function (k) {
        var kw = w * k.bytes / n.bytes;
        if (kw >= 0.5) { box(k, cx, kw, d); lay(k, cx, kw, d + 1); }
        cx += kw;
      });
    })(zoom, 0, W, chain.length);
    crumbs.textContent = "";
    chain.forEach(function (n, i) {
      if (i) { crumbs.appendChild(document.createTextNode(" \u203a ")); }
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
      var f = data.frames[s.frames[0]], key = f.file + ":" + f.line;
      var a = acc[key] || (acc[key] = { f: f, bytes: 0, blocks: 0 });
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
      tr.appendChild(el("td", {}, r.f.file + ":" + r.f.line));
      tr.appendChild(el("td", {}, r.f.function));
      tb.appendChild(tr);
    });
  }

  /* Timeline: traced bytes and RSS, peak marked. */
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
    }
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4;
      text(L - 6, Y(v) + 4, fmt(v), "end");
      text(X(tmax * i / 4), H - 6, (tmax * i / 4).toFixed(2) + " s", "middle");
    }
    if (t.rss.some(function (v) { return v > 0; })) { line(t.rss, "#999", "RSS"); }
    line(t.traced, "#264d7a", "traced bytes");
    if (data.totals.peak_time_s !== null) {
      var px = X(data.totals.peak_time_s), mk = document.createElementNS(ns, "line");
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
      text(px + 4, 20, "peak " + fmt(data.totals.peak_bytes) + " at " + data.totals.peak_time_s.toFixed(2) + " s");
    }
    box.appendChild(svg);
    box.appendChild(el("div", { "class": "note" }, "blue: traced bytes; grey: RSS; red: the peak"));
  }

  function renderClasses() {
    var box = document.getElementById("classes");
    if (!data.classes) { box.style.display = "none"; return; }
    var tb = box.querySelector("tbody");
    data.classes.slice().sort(function (a, b) { return b.bytes - a.bytes; }).slice(0, 30).forEach(function (c) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "num" }, fmt(c.bytes)));
      tr.appendChild(el("td", { "class": "num" }, String(c.count)));
      tr.appendChild(el("td", {}, c.name));
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
