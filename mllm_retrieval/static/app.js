// mllmret web page: search, refine with tag chips, view one image. Plain DOM, no dependencies.
// Every text from the server (paths, tags, captions, raw model output) is set with textContent,
// never parsed as HTML.
"use strict";

const PAGE = 24;
const THUMB = { width: 240, height: 180 };
const PART = /([+-]?)"([^"]*)"?|([+-]?)(\S+)/g; // same syntax as mllm_retrieval/query.py
const $ = (id) => document.getElementById(id);
const state = {
  query: null, offset: 0, results: [], hasMore: false, loading: false, seq: 0, scrollY: 0, fromResults: false,
  mode: null, // the URL's mode (null: the server's default), shownMode: the mode the results were ranked in
  shownMode: null, defaultMode: null,
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

// ---- the query: parts, and adding or excluding a word -----------------------------------------
function parts(query) {
  return [...query.matchAll(PART)].map((m) => {
    const quoted = m[2] !== undefined;
    return { text: m[0], sign: quoted ? m[1] : m[3], word: (quoted ? m[2] : m[4]).toLowerCase().trim() };
  });
}

function asQueryWord(word) {
  return /\s/.test(word) || /^[+-]/.test(word) ? `"${word}"` : word;
}

function refined(query, word, exclude) {
  const kept = parts(query).filter((p) => p.word !== word.toLowerCase()).map((p) => p.text);
  return [...kept, (exclude ? "-" : "") + asQueryWord(word)].join(" ");
}

function chipState(query, word) {
  const part = parts(query).find((p) => p.word === word.toLowerCase());
  return part ? (part.sign === "-" ? "out" : "in") : "";
}

// ---- navigation: the URL holds the query, the mode (unless the server's default) and the open image
function urlFor(query, imageId = null, mode = state.mode) {
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  if (mode) params.set("mode", mode);
  if (imageId !== null) params.set("image", imageId);
  const search = params.toString();
  return search ? `/?${search}` : "/";
}

function go(query, imageId = null, mode = state.mode) {
  const url = urlFor(query.trim(), imageId, mode);
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  render();
}

async function render() {
  const params = new URLSearchParams(location.search);
  const query = params.get("q") || "";
  const mode = params.get("mode") || null;
  const imageId = params.get("image");
  $("q").value = query;
  showMode(mode);
  document.title = query ? `${query} – mllmret` : "mllmret";
  const changed = query !== state.query || mode !== state.mode;
  if (imageId !== null) {
    if (changed) runSearch(query, mode);
    return showImage(imageId);
  }
  state.fromResults = false;
  hideImage();
  if (changed) await runSearch(query, mode);
}

// ---- search mode: hybrid, keyword or semantic ("Meaning") -------------------------------------
function showMode(mode) {
  const shown = mode || state.defaultMode;
  if (shown) $("mode").value = shown;
}

function learnDefaultMode(mode) {
  if (!mode || state.defaultMode === mode) return;
  state.defaultMode = mode;
  showMode(new URLSearchParams(location.search).get("mode"));
}

async function changeMode() {
  const chosen = $("mode").value;
  if (!state.defaultMode) await api("/api/library").then((lib) => learnDefaultMode(lib.mode), () => {});
  go($("q").value, null, chosen === state.defaultMode ? null : chosen);
}

function formatScore(r, mode) {
  return Number(r.score).toFixed(mode === "keyword" ? 2 : 4);
}

function scoreTitle(r, mode) {
  return [mode === "keyword" ? "BM25 score" : "fused rank score (RRF)",
    mode !== "keyword" && r.bm25 !== null && r.bm25 !== undefined ? `BM25 ${Number(r.bm25).toFixed(2)}` : null,
    r.similarity !== null && r.similarity !== undefined ? `similarity ${Number(r.similarity).toFixed(2)}` : null,
  ].filter(Boolean).join(" · ");
}

// ---- search results ---------------------------------------------------------------------------
async function runSearch(query, mode = null) {
  state.query = query;
  state.mode = mode;
  state.offset = 0;
  state.results = [];
  state.hasMore = false;
  state.loading = false;
  $("results").replaceChildren();
  $("more").hidden = true;
  $("empty").hidden = true;
  if (!query.trim()) return showHome();
  await loadPage();
}

async function loadPage() {
  if (state.loading) return;
  const seq = ++state.seq;
  state.loading = true;
  setStatus(state.offset ? "Loading more…" : "Searching…");
  try {
    const params = new URLSearchParams({ q: state.query, k: PAGE, offset: state.offset });
    if (state.mode) params.set("mode", state.mode);
    const data = await api(`/api/search?${params}`);
    if (seq !== state.seq) return;
    learnDefaultMode(data.default_mode);
    state.shownMode = data.mode;
    if (data.empty) {
      if (data.empty === "no_words") return setStatus(data.message, "error");
      setStatus("");
      return showEmpty(`${data.message.split(":")[0]}.`, data.hint);
    }
    state.results.push(...data.results);
    state.offset += data.results.length;
    state.hasMore = data.has_more;
    $("results").append(...data.results.map((r) => card(r, data.mode)));
    $("more").hidden = !state.hasMore || !$("view").hidden;
    const count = `${state.results.length}${state.hasMore ? "+" : ""}`;
    setStatus(state.results.length
      ? `${count} image${state.results.length === 1 ? "" : "s"} for “${state.query}”`
      : `No images match “${state.query}”. Remove a word or an exclusion (-word), or try another word` +
        (data.mode === "keyword" ? ", or search by meaning (Hybrid or Meaning)." : "."));
  } catch (error) {
    if (seq === state.seq) setStatus(`Error: ${error.message}`, "error");
  } finally {
    if (seq === state.seq) state.loading = false;
  }
}

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
}

function fit(width, height, maxWidth, maxHeight) {
  const scale = Math.min(maxWidth / width, maxHeight / height, 1e9);
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

function boxDiv(box, width, height, className, label = null) {
  const [x0, y0, x1, y1] = box;
  const div = el("div", { class: className }, label === null ? null : el("span", { text: label }));
  Object.assign(div.style, {
    left: `${(100 * x0) / width}%`, top: `${(100 * y0) / height}%`,
    width: `${(100 * (x1 - x0)) / width}%`, height: `${(100 * (y1 - y0)) / height}%`,
  });
  return div;
}

function baseName(path) {
  return (path || "").split(/[\\/]/).pop();
}

function displayName(r) {
  const file = r.thumbnail ? baseName(r.path) : "";
  return file || r.external_id || baseName(r.path) || `image ${r.image_id ?? r.id}`;
}

function picture(r, maxWidth, maxHeight, src, loading = "lazy") {
  const frame = el("div", { class: "frame" });
  if (r.width && r.height) {
    const [w, h] = fit(r.width, r.height, maxWidth, maxHeight);
    Object.assign(frame.style, { width: `${w}px`, height: `${h}px` });
  } else {
    frame.classList.add("free");
  }
  const name = displayName(r);
  const missing = () => frame.replaceChildren(el("div", { class: "missing", text: `${name}\n(no image file)` }));
  if (src) frame.append(el("img", { src, alt: name, loading, decoding: "async", onerror: missing }));
  else missing();
  return frame;
}

function chips(tags, { onChange = null } = {}) {
  return el("div", { class: "chips" }, tags.map((tag) => {
    const mark = chipState(state.query || "", tag);
    const change = (exclude) => (event) => {
      event.preventDefault();
      if (onChange) onChange();
      go(refined(state.query || "", tag, exclude));
    };
    return el("span", { class: `chip ${mark}`.trim() },
      el("button", { type: "button", class: "add", title: `Add “${tag}” to the query`, onclick: change(false) }, tag),
      el("button", { type: "button", class: "exclude", title: `Exclude “${tag}” (-${tag})`,
        "aria-label": `Exclude ${tag}`, onclick: change(true) }, "−"));
  }));
}

function howMatched(r) {
  if (r.via === "meaning") {
    return el("span", { class: "by-meaning", title: "no query word in its text; similar in meaning",
      text: `by meaning ${Number(r.similarity).toFixed(2)}` });
  }
  const where = r.tile === "full" || !r.tile ? "whole image" : `tile ${r.tile}`;
  return [r.matched.length ? ["matched ", r.matched.map((w) => el("mark", { text: w })), " · "] : null, where];
}

function card(r, mode) {
  const open = (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    go(state.query, r.image_id);
    state.fromResults = true;
  };
  const frame = picture(r, THUMB.width, THUMB.height, r.thumbnail);
  if (r.box && r.width && r.height) frame.append(boxDiv(r.box, r.width, r.height, "box best"));
  return el("article", { class: "card", "data-image-id": r.image_id },
    el("a", { class: "thumb", href: urlFor(state.query, r.image_id), onclick: open, title: r.path || r.external_id },
      frame),
    el("div", { class: "meta" },
      el("span", { class: "rank", text: `#${r.rank}` }),
      el("span", { class: "score", title: scoreTitle(r, mode), text: formatScore(r, mode) }),
      el("span", { class: "name", title: r.path || "", text: displayName(r) })),
    el("div", { class: "matched" }, howMatched(r)),
    chips(r.tags));
}

// ---- home and empty states --------------------------------------------------------------------
async function showHome() {
  setStatus("");
  try {
    const lib = await api("/api/library");
    learnDefaultMode(lib.mode);
    if (state.query) return;
    if (!lib.captions) {
      showEmpty(`${lib.exists ? "No captions yet in" : "No database yet at"} ${lib.database}.`, lib.hint);
    } else {
      setStatus(`${lib.images} photos, ${lib.captions} captions from ${lib.runs} run(s). Type words to find photos.`);
    }
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
}

function showEmpty(message, command) {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  $("empty").replaceChildren(
    el("h2", { text: "Nothing to search yet" }),
    el("p", { text }),
    el("p", { text: "Describe your photos with a multimodal LLM (a small model runs on a laptop CPU):" }),
    el("pre", {}, el("code", { text: command || "mllmret caption ~/Pictures" })),
    el("p", {}, "Or import captions made elsewhere: ", el("code", { text: "mllmret import FILE.jsonl" }),
      ". Then reload this page."));
  $("empty").hidden = false;
}

// ---- one image --------------------------------------------------------------------------------
async function showImage(id) {
  if ($("view").hidden) state.scrollY = window.scrollY;
  for (const part of ["results", "empty", "status"]) $(part).hidden = true;
  $("more").hidden = true;
  const view = $("view");
  view.hidden = false;
  view.replaceChildren(el("p", { text: "Loading…" }));
  window.scrollTo(0, 0);
  try {
    const d = await api(`/api/images/${encodeURIComponent(id)}`);
    if (new URLSearchParams(location.search).get("image") !== id) return;
    view.replaceChildren(...imageView(d));
  } catch (error) {
    view.replaceChildren(backButton(), el("p", { class: "error", text: `Error: ${error.message}` }));
  }
}

function backToResults() {
  if (state.fromResults) history.back(); // the results' own history entry, scroll position kept
  else go(state.query || "");
}

function backButton() {
  return el("button", { type: "button", class: "back", onclick: backToResults }, "← Results");
}

function imageView(d) {
  const hit = state.results.find((r) => r.image_id === d.id);
  const frame = picture(d, Math.min(900, $("view").clientWidth || 900), Math.max(240, window.innerHeight * 0.7), d.file, "eager");
  const boxes = new Map();
  d.tiles.forEach((t, i) => {
    if (!t.box || t.key === "full" || !d.width || !d.height) return;
    const best = hit && hit.tile === t.key ? " best" : "";
    const div = boxDiv(t.box, d.width, d.height, `box part${best}`, String(i));
    boxes.set(t.key, div);
    frame.append(div);
  });
  const title = displayName(d);
  const facts = [d.path, d.width && d.height ? `${d.width}×${d.height}` : null,
    d.external_id ? `id ${d.external_id}` : null, d.searchable ? null : `status: ${d.status}`].filter(Boolean);
  const tiles = d.tiles.map((t, i) => {
    const label = t.key === "full" ? "Whole image" : `Tile ${i} · ${t.key}`;
    const best = hit && hit.tile === t.key ? el("span", { class: "badge", text: "best match" }) : null;
    return el("section", {
      class: "tile",
      onmouseenter: () => boxes.get(t.key)?.classList.add("hover"),
      onmouseleave: () => boxes.get(t.key)?.classList.remove("hover"),
    }, el("h3", {}, label, best), t.captions.map((c) => el("div", { class: "caption" },
      el("div", { class: "run", text: `run ${c.run} · ${c.model}${c.prompt ? ` · prompt ${c.prompt}` : ""}` }),
      chips(c.tags.filter(Boolean)),
      el("p", { class: "text", text: c.caption }),
      el("details", {}, el("summary", { text: "raw model text" }), el("pre", { text: c.raw })))));
  });
  return [
    el("div", { class: "view-head" }, backButton(), el("h2", { text: title }),
      hit ? el("span", { class: "score", title: scoreTitle(hit, state.shownMode),
        text: `#${hit.rank} · ${formatScore(hit, state.shownMode)}` }) : null),
    el("p", { class: "facts", text: facts.join(" · ") }),
    el("div", { class: "view-body" }, el("div", { class: "figure" }, frame), el("div", { class: "tiles" }, tiles)),
  ];
}

function hideImage() {
  if ($("view").hidden) return;
  $("view").hidden = true;
  $("view").replaceChildren();
  for (const part of ["results", "status"]) $(part).hidden = false;
  $("empty").hidden = !$("empty").childElementCount;
  $("more").hidden = !state.hasMore;
  window.scrollTo(0, state.scrollY);
}

// ---- wiring -----------------------------------------------------------------------------------
function start() {
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.query = null; // searching again on submit picks up captions added meanwhile
    go($("q").value);
  });
  $("home").addEventListener("click", (event) => {
    event.preventDefault();
    go("");
  });
  $("mode").addEventListener("change", changeMode);
  $("more").addEventListener("click", () => loadPage());
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.hasMore && $("view").hidden) loadPage();
  }, { rootMargin: "400px" }).observe($("more"));
  window.addEventListener("popstate", render);
  document.addEventListener("keydown", (event) => {
    const typing = event.target instanceof HTMLInputElement;
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("q").focus();
      $("q").select();
    } else if (event.key === "Escape" && !$("view").hidden) {
      backToResults();
    }
  });
  render();
}

start();
