// mllmret web page: search, refine with tag chips, view one image, search for more like an image but
// changed ("more like this, but …"). Plain DOM, no dependencies.
// Every text from the server (paths, tags, captions, raw model output) is set with textContent,
// never parsed as HTML.
"use strict";

const PAGE = 24;
const THUMB = { width: 240, height: 180 };
const PART = /([+-]?)"([^"]*)"?|([+-]?)(\S+)/g; // same syntax as mllm_retrieval/search/query.py
const $ = (id) => document.getElementById(id);
const state = {
  query: null, offset: 0, results: [], hasMore: false, loading: false, seq: 0, scrollY: 0, fromResults: false,
  mode: null, // the URL's mode (null: the server's default), shownMode: the mode the results were ranked in
  shownMode: null, defaultMode: null,
  like: null, but: null, // the URL's reference image id and modification ("more like this, but …")
  reference: null, // the server's `like` object: the reference and what became of its words
  moreMeaning: false, // also the meaning-only results below the cut-off ("More like this meaning")
};
let closeOpenLikeForm = null; // closes the one open "More like this, but…" input
let likeForms = 0;

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
  if (state.like !== null) return likeChipState(word);
  const part = parts(query).find((p) => p.word === word.toLowerCase());
  return part ? (part.sign === "-" ? "out" : "in") : "";
}

function likeChipState(word) {
  const c = state.reference;
  const w = word.toLowerCase();
  return !c ? "" : c.excluded.includes(w) ? "out" : c.added.includes(w) ? "in" : "";
}

// a chip's word added to a modification: "-word" excludes it; an added word follows "; " so that it is
// not read as part of a negation before it ("without red; green" adds green, "without red green" does not)
function likeRefined(but, word, exclude) {
  if (likeChipState(word) === (exclude ? "out" : "in")) return but;
  const part = (exclude ? "-" : "") + asQueryWord(word);
  return but ? `${but}${exclude ? " " : "; "}${part}` : part;
}

function activeText() {
  return (state.like !== null ? state.but : state.query) || "";
}

// ---- navigation: the URL holds the query, a reference to search like (like=ID) and how the results
// should differ from it (but=…), the mode (unless the server's default) and the open image
function urlFor({ query = state.query, like = state.like, but = state.but, image = null, mode = state.mode } = {}) {
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  if (like !== null) params.set("like", like);
  if (like !== null && but) params.set("but", but);
  if (mode) params.set("mode", mode);
  if (image !== null) params.set("image", image);
  const search = params.toString();
  return search ? `/?${search}` : "/";
}

function go(changes = {}) {
  const trim = ([key, value]) => [key, typeof value === "string" ? value.trim() : value];
  const url = urlFor(Object.fromEntries(Object.entries(changes).map(trim)));
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  render();
}

async function render() {
  const params = new URLSearchParams(location.search);
  const query = params.get("q") || "";
  const mode = params.get("mode") || null;
  const imageId = params.get("image");
  const like = params.get("like");
  const but = like === null ? null : params.get("but") || "";
  $("q").value = query;
  showMode(mode);
  document.title = like !== null ? `like #${like}${but ? `, but ${but}` : ""} – mllmret`
    : query ? `${query} – mllmret` : "mllmret";
  const changed = query !== state.query || mode !== state.mode || like !== state.like || but !== state.but;
  if (imageId !== null) {
    if (changed) runSearch(query, mode, like, but);
    return showImage(imageId);
  }
  state.fromResults = false;
  hideImage();
  if (changed) await runSearch(query, mode, like, but);
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
  go({ query: $("q").value, mode: chosen === state.defaultMode ? null : chosen });
}

function formatScore(r, mode) {
  return Number(r.score).toFixed(mode === "keyword" ? 2 : 4);
}

function scoreTitle(r, mode) {
  return [mode === "keyword" ? "BM25 score" : "fused score",
    mode !== "keyword" && r.bm25 !== null && r.bm25 !== undefined ? `BM25 ${Number(r.bm25).toFixed(2)}` : null,
    r.similarity !== null && r.similarity !== undefined ? `similarity ${Number(r.similarity).toFixed(2)}` : null,
  ].filter(Boolean).join(" · ");
}

// ---- search results ---------------------------------------------------------------------------
async function runSearch(query, mode = null, like = null, but = null) {
  state.query = query;
  state.mode = mode;
  state.like = like;
  state.but = but;
  state.moreMeaning = false;
  state.reference = null;
  state.offset = 0;
  state.results = [];
  state.hasMore = false;
  state.loading = false;
  $("results").replaceChildren();
  $("more").hidden = true;
  $("more-meaning").hidden = true;
  $("empty").hidden = true;
  $("related").hidden = true;
  likeStrip();
  if (like === null && !query.trim()) return showHome();
  await loadPage();
}

async function loadPage() {
  if (state.loading) return;
  const seq = ++state.seq;
  state.loading = true;
  setStatus(state.offset ? "Loading more…" : "Searching…");
  try {
    const params = new URLSearchParams({ q: activeText(), k: PAGE, offset: state.offset });
    if (state.like !== null) params.set("like", state.like);
    if (state.mode) params.set("mode", state.mode);
    if (state.moreMeaning) params.set("more_meaning", "true");
    const data = await api(`/api/search?${params}`);
    if (seq !== state.seq) return;
    learnDefaultMode(data.default_mode);
    state.shownMode = data.mode;
    if (data.like && !state.reference) likeStrip(data.like);
    if (data.empty) {
      if (data.empty === "no_words") return setStatus(data.message, "error");
      setStatus("");
      return showEmpty(`${data.message.split(":")[0]}.`, data.hint);
    }
    if (!state.offset) related(data.suggested || []);
    state.results.push(...data.results);
    state.offset += data.results.length;
    state.hasMore = data.has_more;
    $("results").append(...data.results.map((r) => card(r, data.mode)));
    $("more").hidden = !state.hasMore || !$("view").hidden;
    $("more-meaning").hidden = !(data.hidden > 0 && !state.hasMore && !state.moreMeaning);
    $("more-meaning").textContent = `More like this meaning (${data.hidden})`;
    setStatus(data.notice ? `${resultsStatus(data.mode)} Note: ${data.notice}` : resultsStatus(data.mode));
  } catch (error) {
    if (seq === state.seq) setStatus(`Error: ${error.message}`, "error");
  } finally {
    if (seq === state.seq) state.loading = false;
  }
}

function resultsStatus(mode) {
  const n = state.results.length;
  const count = `${n}${state.hasMore ? "+" : ""} image${n === 1 && !state.hasMore ? "" : "s"}`;
  const byMeaning = mode === "keyword" ? ", or search by meaning (Hybrid or Meaning)." : ".";
  if (state.like !== null) {
    const like = `like ${referenceName()}${state.but ? `, but “${state.but}”` : ""}`;
    return n ? `${count} ${like}` : `No images ${like}. Change or remove words of the change${byMeaning}`;
  }
  return n ? `${count} for “${state.query}”`
    : `No images match “${state.query}”. Remove a word or an exclusion (-word), or try another word${byMeaning}`;
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

// a chip adds its word to the query, or to the change of a "more like this, but …" search
function chips(tags, { onChange = null } = {}) {
  return el("div", { class: "chips" }, tags.map((tag) => {
    const mark = chipState(activeText(), tag);
    const target = state.like !== null ? "the change" : "the query";
    const change = (exclude) => (event) => {
      event.preventDefault();
      if (onChange) onChange();
      if (state.like !== null) go({ but: likeRefined(state.but || "", tag, exclude) });
      else go({ query: refined(state.query || "", tag, exclude) });
    };
    return el("span", { class: `chip ${mark}`.trim() },
      el("button", { type: "button", class: "add", title: `Add “${tag}” to ${target}`, onclick: change(false) }, tag),
      el("button", { type: "button", class: "exclude", title: `Exclude “${tag}” (-${tag})`,
        "aria-label": `Exclude ${tag}`, onclick: change(true) }, "−"));
  }));
}

// words feedback drew from the first results: one click adds one to the query (iterative refinement)
function related(words) {
  const box = $("related");
  box.replaceChildren(...(words.length && state.like === null
    ? [el("span", { class: "label", text: "Related:" }), chips(words)] : []));
  box.hidden = !words.length || state.like !== null || !$("view").hidden;
}

function howMatched(r) {
  if (r.via === "meaning") {
    return el("span", { class: "by-meaning", title: "no query word in its text; similar in meaning",
      text: `by meaning ${Number(r.similarity).toFixed(2)}` });
  }
  const where = r.tile === "full" || !r.tile ? "whole image" : `tile ${r.tile}`;
  const read = r.text_in_photo && r.text_in_photo.length ? " · text in photo" : "";
  const given = r.in_metadata && r.in_metadata.length ? " · in photo metadata" : "";
  return [r.matched.length ? ["matched ", r.matched.map((w) => el("mark", { text: w })), " · "] : null, where, read,
    given];
}

function opener(imageId) {
  return (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    go({ image: imageId });
    state.fromResults = true;
  };
}

function card(r, mode) {
  const frame = picture(r, THUMB.width, THUMB.height, r.thumbnail);
  if (r.box && r.width && r.height) frame.append(boxDiv(r.box, r.width, r.height, "box best"));
  return el("article", { class: "card", "data-image-id": r.image_id },
    el("a", { class: "thumb", href: urlFor({ image: r.image_id }), onclick: opener(r.image_id),
      title: r.path || r.external_id }, frame),
    el("div", { class: "meta" },
      el("span", { class: "rank", text: `#${r.rank}` }),
      el("span", { class: "score", title: scoreTitle(r, mode), text: formatScore(r, mode) }),
      el("span", { class: "name", title: r.path || "", text: displayName(r) })),
    el("div", { class: "matched" }, howMatched(r)),
    chips(r.tags),
    likeControl(r.image_id, displayName(r)));
}

// ---- "more like this, but …": a button that opens a small input; the strip above the results --
function likeControl(imageId, name) {
  const id = `like-form-${++likeForms}`;
  const button = el("button", { type: "button", class: "like-open", "aria-expanded": "false", "aria-controls": id,
    title: "Search for photos like this one, changed as you say" }, "More like this, but…");
  const input = el("input", { type: "text", name: "but", autocomplete: "off", spellcheck: "false", maxlength: 2000,
    placeholder: "without people, at sunset", "aria-label": `How the photos should differ from ${name}` });
  const form = el("form", { id, class: "like-form", hidden: true, "aria-label": `More like ${name}, but…` },
    input, el("button", { type: "submit" }, "Search"));
  const close = () => {
    form.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (closeOpenLikeForm === close) closeOpenLikeForm = null;
  };
  button.addEventListener("click", () => {
    if (!form.hidden) return close();
    if (closeOpenLikeForm) closeOpenLikeForm();
    form.hidden = false;
    button.setAttribute("aria-expanded", "true");
    closeOpenLikeForm = close;
    input.focus();
  });
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation(); // Esc closes the input, not the image view
    close();
    button.focus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    close();
    go({ like: String(imageId), but: input.value });
  });
  return el("div", { class: "like-control" }, button, form);
}

function referenceName() {
  return state.reference ? displayName(state.reference) : `image ${state.like}`;
}

function likeStrip(info = null) {
  const strip = $("like");
  if (info) state.reference = info;
  strip.hidden = state.like === null || !$("view").hidden;
  if (state.like === null) return strip.replaceChildren();
  const ref = state.reference;
  const title = el("p", { class: "like-title" }, "More like ", el("strong", { text: referenceName() }),
    state.but ? [", but ", el("q", { text: state.but })] : null);
  strip.replaceChildren(
    el("a", { class: "like-thumb", href: urlFor({ image: state.like }), onclick: opener(state.like),
      title: `Open ${referenceName()}` }, ref ? picture(ref, 96, 72, ref.thumbnail) : null),
    el("div", { class: "like-body" }, title, ref ? composition(ref) : null),
    el("button", { type: "button", class: "clear", onclick: () => go({ like: null, but: null }),
      title: "Back to the search (or home) without this photo" }, "× Clear"));
}

const WORD_GROUPS = [
  ["kept", "words of the photo that are searched for (at half weight)"],
  ["dropped", "words of the photo the change removes"],
  ["added", "new words that are searched for"],
  ["excluded", "no result holds these words"],
];

function composition(info) {
  const groups = WORD_GROUPS.filter(([key]) => info[key].length);
  return el("p", { class: "composition" }, groups.map(([key, meaning], i) => [
    i ? el("span", { class: "sep", "aria-hidden": "true", text: "·" }) : null,
    el("span", { class: "label", title: meaning, text: key }),
    wordList(key, info[key]),
  ]));
}

function wordList(key, words, max = 16) {
  const word = (w) => el("span", { class: `word ${key}`, text: w });
  if (words.length <= max) return words.map(word);
  const more = el("button", { type: "button", class: "word more", title: `Show all ${key} words`,
    onclick: () => more.replaceWith(...words.slice(max).map(word)) }, `+${words.length - max} more`);
  return [...words.slice(0, max).map(word), more];
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
  for (const part of ["results", "empty", "status", "like", "related"]) $(part).hidden = true;
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
  else go();
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
  const words = (hit && hit.text_in_photo) || [];
  d.tiles.forEach((t) => t.captions.forEach((c) => (c.lines || []).forEach((line) => {
    if (!d.width || !d.height) return;
    const lower = line.text.toLowerCase();
    const found = line.searchable && words.some((w) => lower.includes(w));
    frame.append(boxDiv(line.box, d.width, d.height, `box ocr${found ? " found" : ""}`));
  })));
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
      c.lines ? el("ul", { class: "ocr-lines", title: "text read in the photo (OCR)" }, c.lines.map((line) =>
        el("li", { class: line.searchable ? null : "unsure", text: `${line.text} (${line.confidence.toFixed(2)})` })))
        : el("p", { class: "text", text: c.caption }),
      el("details", {}, el("summary", { text: "raw model text" }), el("pre", { text: c.raw })))));
  });
  return [
    el("div", { class: "view-head" }, backButton(), el("h2", { text: title }),
      hit ? el("span", { class: "score", title: scoreTitle(hit, state.shownMode),
        text: `#${hit.rank} · ${formatScore(hit, state.shownMode)}` }) : null,
      likeControl(d.id, title)),
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
  $("related").hidden = !$("related").childElementCount;
  $("like").hidden = state.like === null;
  $("more").hidden = !state.hasMore;
  window.scrollTo(0, state.scrollY);
}

// ---- wiring -----------------------------------------------------------------------------------
function start() {
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.query = null; // searching again on submit picks up captions added meanwhile
    go({ query: $("q").value, like: null, but: null });
  });
  $("home").addEventListener("click", (event) => {
    event.preventDefault();
    go({ query: "", like: null, but: null });
  });
  $("mode").addEventListener("change", changeMode);
  $("more").addEventListener("click", () => loadPage());
  $("more-meaning").addEventListener("click", () => {
    state.moreMeaning = true;
    state.offset = 0;
    state.results = [];
    $("results").replaceChildren();
    $("more-meaning").hidden = true;
    loadPage();
  });
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
