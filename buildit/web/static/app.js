// BuildIt! web UI: live statuses (server-sent events) and live build logs.
// Every page works without this file; it only keeps what is shown up to date.
// Text from the server is put into the page with textContent (never innerHTML),
// except the fragments rendered (and escaped) by the server's own templates.
"use strict";

(function () {
  const LABELS = { created: "pending", running: "running", success: "success",
                   failed: "failed", error: "error" };
  const TERMINAL = new Set(["success", "failed", "error"]);

  // ------------------------------------------------------------ ANSI colours

  // Mirrors buildit/web/ansi.py: SGR codes become classes, other escapes vanish.
  const BASIC = [[0, 0, 0], [205, 49, 49], [13, 188, 121], [229, 229, 16], [36, 114, 200],
    [188, 63, 188], [17, 168, 205], [229, 229, 229], [102, 102, 102], [241, 76, 76],
    [35, 209, 139], [245, 245, 67], [59, 142, 234], [214, 112, 214], [41, 184, 219],
    [255, 255, 255]];

  function nearest(r, g, b) {
    let best = 0, bestD = Infinity;
    BASIC.forEach(function (c, i) {
      const d = (c[0] - r) ** 2 + (c[1] - g) ** 2 + (c[2] - b) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    });
    return best;
  }

  function from256(n) {
    if (n < 16) return n;
    if (n >= 232) { const l = 8 + (n - 232) * 10; return nearest(l, l, l); }
    n -= 16;
    const s = [0, 95, 135, 175, 215, 255];
    return nearest(s[Math.floor(n / 36)], s[Math.floor(n / 6) % 6], s[n % 6]);
  }

  function AnsiConverter() {
    this.style = { fg: null, bg: null, b: false, d: false, i: false, u: false };
    this.pending = "";  // an escape sequence cut at the end of a chunk
    this.cr = false;    // the previous chunk ended with \r
  }

  AnsiConverter.prototype.apply = function (params) {
    const s = this.style;
    const codes = (params || "0").replace(/:/g, ";").split(";").map(function (p) {
      return /^\d+$/.test(p) ? parseInt(p, 10) : 0;
    });
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { s.fg = s.bg = null; s.b = s.d = s.i = s.u = false; }
      else if (c === 1) s.b = true;
      else if (c === 2) s.d = true;
      else if (c === 3) s.i = true;
      else if (c === 4) s.u = true;
      else if (c === 22) s.b = s.d = false;
      else if (c === 23) s.i = false;
      else if (c === 24) s.u = false;
      else if (c >= 30 && c <= 37) s.fg = c - 30;
      else if (c >= 90 && c <= 97) s.fg = c - 90 + 8;
      else if (c === 39) s.fg = null;
      else if (c >= 40 && c <= 47) s.bg = c - 40;
      else if (c >= 100 && c <= 107) s.bg = c - 100 + 8;
      else if (c === 49) s.bg = null;
      else if ((c === 38 || c === 48) && i + 1 < codes.length) {
        let colour = null;
        if (codes[i + 1] === 5 && i + 2 < codes.length) {
          colour = from256(Math.min(codes[i + 2], 255)); i += 2;
        } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
          colour = nearest(Math.min(codes[i + 2], 255), Math.min(codes[i + 3], 255),
                           Math.min(codes[i + 4], 255));
          i += 4;
        }
        if (colour !== null) { if (c === 38) s.fg = colour; else s.bg = colour; }
      }
    }
  };

  AnsiConverter.prototype.classes = function () {
    const s = this.style, out = [];
    if (s.fg !== null) out.push("fg" + s.fg);
    if (s.bg !== null) out.push("bg" + s.bg);
    if (s.b) out.push("b");
    if (s.d) out.push("d");
    if (s.i) out.push("i");
    if (s.u) out.push("u");
    return out;
  };

  // CSI, OSC, or a two-byte escape; an unfinished one at the end waits for more text.
  const ESCAPE = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;
  const UNFINISHED = /\x1b(\[[0-9;:?]*|\][^\x07\x1b]*\x1b?|)$/;
  const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;

  // Append ``text`` to ``target`` as text nodes and spans; returns nothing.
  AnsiConverter.prototype.append = function (target, text) {
    text = this.pending + text;
    this.pending = "";
    const cut = text.match(UNFINISHED);
    if (cut && cut[0]) { this.pending = cut[0]; text = text.slice(0, text.length - cut[0].length); }
    if (this.cr && text.startsWith("\n")) text = text.slice(1);
    this.cr = text.endsWith("\r");
    text = text.replace(/\r\n/g, "\n").replace(/\r/g, "\n");
    const out = document.createDocumentFragment();
    let pos = 0, m;
    ESCAPE.lastIndex = 0;
    while ((m = ESCAPE.exec(text)) !== null) {
      this.emit(out, text.slice(pos, m.index));
      pos = ESCAPE.lastIndex;
      if (m[2] === "m") this.apply(m[1]);
    }
    this.emit(out, text.slice(pos));
    target.appendChild(out);
  };

  AnsiConverter.prototype.emit = function (out, text) {
    text = text.replace(/\x1b/g, "").replace(CONTROL, "");
    if (!text) return;
    const classes = this.classes();
    if (classes.length) {
      const span = document.createElement("span");
      span.className = classes.join(" ");
      span.textContent = text;
      out.appendChild(span);
    } else {
      out.appendChild(document.createTextNode(text));
    }
  };

  // ------------------------------------------------------------ statuses

  function pipelineStatus(statuses) {
    if (statuses.includes("error")) return "error";
    if (statuses.includes("failed")) return "failed";
    if (statuses.length && statuses.every(function (s) { return s === "success"; })) {
      return "success";
    }
    return "running";
  }

  function setChip(chip, status, label) {
    chip.className = chip.className.replace(/\bst-\S+/g, "").trim() + " st-" + status;
    chip.dataset.status = status;
    const text = chip.querySelector(".label");
    if (text) text.textContent = label;
  }

  function onJobEvent(ev) {
    let chips = document.querySelectorAll('.chip[data-job-id="' + ev.job_id + '"]');
    chips.forEach(function (chip) { setChip(chip, ev.status, LABELS[ev.status] || ev.status); });
    const rows = document.querySelectorAll('tr[data-pipeline-id="' + ev.pipeline_id + '"]');
    rows.forEach(function (row) {
      const statuses = Array.from(row.querySelectorAll(".chip[data-job-id]")).map(function (c) {
        return c.dataset.status || (c.className.match(/\bst-(\S+)/) || [])[1];
      });
      const p = row.querySelector(".pstatus");
      if (p) { const s = pipelineStatus(statuses); setChip(p, s, s); }
    });
    const table = document.querySelector("table.pipelines[data-page='1']");
    const banner = document.querySelector(".new-items");
    if (!rows.length && table && banner) {
      const ids = Array.from(table.querySelectorAll("tr[data-pipeline-id]")).map(function (r) {
        return parseInt(r.dataset.pipelineId, 10);
      });
      if (!ids.length || ev.pipeline_id > Math.max.apply(null, ids)) banner.hidden = false;
    }
    scheduleRefresh();
  }

  // ------------------------------------------------------------ fragments

  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;

  function scheduleRefresh() {
    if (!document.getElementById("live")) return;
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 150);
  }

  async function refresh() {
    const live = document.getElementById("live");
    if (!live || !live.dataset.fragment) return;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      const resp = await fetch(live.dataset.fragment, { headers: { Accept: "text/html" },
                                                        cache: "no-store" });
      if (resp.ok) {
        const html = await resp.text();
        const focused = document.activeElement && live.contains(document.activeElement);
        live.innerHTML = html;  // rendered and escaped by the server's templates
        if (focused) live.focus();
        if (logFollower) logFollower.statusChanged();
      }
    } catch (e) {
      // the next event or reconnect refreshes again
    } finally {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
    }
  }

  function connectEvents() {
    const main = document.querySelector("main[data-events]");
    if (!main || !window.EventSource) return;
    const source = new EventSource(main.dataset.events);
    let opened = false;
    source.addEventListener("open", function () {
      if (opened) scheduleRefresh();  // events may have been missed while reconnecting
      opened = true;
    });
    source.addEventListener("job", function (e) {
      try { onJobEvent(JSON.parse(e.data)); } catch (err) { /* ignore a bad event */ }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // ------------------------------------------------------------ live log

  let logFollower = null;

  function LogFollower(pre) {
    this.pre = pre;
    this.base = pre.dataset.log.replace(/&attempt=\d+$/, "");
    this.attempt = parseInt(pre.dataset.attempt, 10) || 1;
    this.offset = parseInt(pre.dataset.offset, 10) || 0;
    this.decoder = new TextDecoder("utf-8");
    this.ansi = new AnsiConverter();
    this.timer = null;
    this.busy = false;
    this.finalRead = false;
  }

  LogFollower.prototype.status = function () {
    const s = document.querySelector(".job-status");
    return s ? { status: s.dataset.status, attempt: parseInt(s.dataset.attempt, 10) || 1 }
             : { status: "success", attempt: this.attempt };
  };

  LogFollower.prototype.statusChanged = function () {
    const now = this.status();
    if (now.attempt !== this.attempt) {
      this.attempt = now.attempt;
      this.offset = 0;
      this.pre.textContent = "";
      this.decoder = new TextDecoder("utf-8");
      this.ansi = new AnsiConverter();
      this.finalRead = false;
    }
    this.schedule(0);
  };

  LogFollower.prototype.schedule = function (delay) {
    if (this.timer) clearTimeout(this.timer);
    const self = this;
    this.timer = setTimeout(function () { self.timer = null; self.poll(); }, delay);
  };

  LogFollower.prototype.poll = async function () {
    if (this.busy) return;
    const state = this.status();
    const done = TERMINAL.has(state.status);
    if (done && this.finalRead) return;
    if (state.status === "created" && this.offset === 0) { this.schedule(2000); return; }
    this.busy = true;
    let got = 0;
    try {
      const resp = await fetch(this.base + "&attempt=" + this.attempt, {
        headers: { Range: "bytes=" + this.offset + "-" }, cache: "no-store" });
      if (resp.status === 206 || resp.status === 200) {
        const buf = await resp.arrayBuffer();
        got = buf.byteLength;
        if (got) {
          const atBottom = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 40;
          this.offset += got;
          this.ansi.append(this.pre, this.decoder.decode(buf, { stream: true }));
          const empty = document.querySelector(".log-empty");
          if (empty) empty.hidden = true;
          if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
        }
      }
    } catch (e) {
      // network trouble: try again later
    } finally {
      this.busy = false;
    }
    if (done) {
      if (!got) this.finalRead = true;
      if (!this.finalRead) this.schedule(200);
      return;
    }
    this.schedule(got ? 300 : 1000);
  };

  function startLog() {
    const pre = document.querySelector("pre.log[data-log]");
    if (!pre) return;
    logFollower = new LogFollower(pre);
    pre.scrollTop = pre.scrollHeight;
    logFollower.schedule(0);
  }

  // ------------------------------------------------------------ small things

  function selectToken() {
    const input = document.getElementById("new-token");
    if (input) { input.focus(); input.select(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    connectEvents();
    startLog();
    selectToken();
  });

  window.BuildIt = {
    AnsiConverter: AnsiConverter,
    pipelineStatus: pipelineStatus,
    logOffset: function () { return logFollower ? logFollower.offset : null; },
  };
})();
