// The page of serving.web_ui: a photograph in, each chosen model's ×4 out through the server's public REST API
// (TF Serving's predict, signature predict_encoded, base64 images), compared with bicubic. No library, no build.
"use strict";

const SCALE = 4;
const ZOOM = 160; // the side of each 1:1 zoom, in image pixels
const UPSCALE_ADVICE = " For large photographs use python -m serving.upscale photo.jpg -o out/, which tiles them.";

const state = {
  config: null,
  file: null,
  results: [], // {key, title, canvas, blob, note}
  zoom: {x: 0, y: 0},
};

const $ = (id) => document.getElementById(id);

// ---- talking to the server --------------------------------------------------------------------------------------

async function readConfig() {
  const answer = await fetch("config.json", {cache: "no-store"});
  if (!answer.ok) throw new Error(`the page's configuration was refused (HTTP ${answer.status})`);
  state.config = await answer.json();
  const versions = [];
  for (const model of state.config.models) {
    // TF Serving's model-status API, as any client reads it.
    const status = await fetch(`/v1/models/${encodeURIComponent(model.name)}`, {cache: "no-store"});
    const body = await status.json().catch(() => ({}));
    const labels = Object.entries(model.labels || {});
    for (const entry of body.model_version_status || []) {
      if (entry.state !== "AVAILABLE") continue;
      const names = labels.filter(([, v]) => String(v) === String(entry.version)).map(([l]) => l);
      versions.push({name: model.name, version: String(entry.version), labels: names});
    }
  }
  versions.sort((a, b) => a.name.localeCompare(b.name) || Number(b.version) - Number(a.version));
  return versions;
}

function describeVersion(v) {
  const labels = v.labels.length ? ` · label ${v.labels.join(", ")}` : "";
  return `${v.name} · version ${v.version}${labels}`;
}

function base64Of(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// One plain sentence for a refusal: the server's own message, with what to do where there is something to do.
function sentence(text) {
  const trimmed = String(text).trim().replace(/[.\s]+$/, "");
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1) + ".";
}

function refusal(httpStatus, message) {
  const said = message ? `: ${message}` : "";
  if (httpStatus === 429 || /pixels|larger than/.test(message)) {
    const advice = message.includes("serving.upscale") ? "" : UPSCALE_ADVICE;
    return sentence(`The server refused the photograph as too large${said}`) + advice;
  }
  if (httpStatus === 413) return sentence("The server refused the request as too large (HTTP 413)") + UPSCALE_ADVICE;
  if (httpStatus === 504) return sentence(`The server did not finish within the request's deadline${said}`);
  if (httpStatus === 503) return sentence(`The server is not serving now${said}`);
  if (httpStatus === 404) return sentence(`The model is not served (any more)${said}; reload the page`);
  return sentence(`The server refused the photograph (HTTP ${httpStatus})${said}`);
}

async function predict(version, imageBytes) {
  const path = `/v1/models/${encodeURIComponent(version.name)}/versions/${version.version}:predict`;
  const body = JSON.stringify({signature_name: "predict_encoded", instances: [{b64: base64Of(imageBytes)}]});
  const started = performance.now();
  let answer;
  try {
    answer = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body});
  } catch (error) {
    throw new Error(sentence(`The server could not be reached (${error.message})`));
  }
  const text = await answer.text();
  const milliseconds = performance.now() - started;
  let json = null;
  try { json = JSON.parse(text); } catch (ignored) { /* waitress answers some refusals in plain text */ }
  if (!answer.ok) throw new Error(refusal(answer.status, json && typeof json.error === "string" ? json.error : ""));
  const png = json && json.predictions && json.predictions[0] && json.predictions[0].b64;
  if (typeof png !== "string") throw new Error(sentence("The server's answer holds no image"));
  return {blob: new Blob([bytesOf(png)], {type: "image/png"}), milliseconds};
}

// ---- pixels -----------------------------------------------------------------------------------------------------

async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  return canvas;
}

function pixelsOf(canvas, width = canvas.width, height = canvas.height) {
  return canvas.getContext("2d").getImageData(0, 0, width, height);
}

function canvasOf(image) {
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

// Keys' cubic (a = -0.5) with half-pixel centres, as tf.image.resize's bicubic in training: taps outside the image
// are dropped and the others renormalised (resize_bicubic_op.cc and scale_and_translate_op.cc both do so), and when
// reducing, the kernel widens by the factor (antialias).
function cubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

function taps(inSize, outSize) {
  const scale = inSize / outSize;
  const stretch = Math.max(scale, 1);
  const count = Math.ceil(2 * stretch) * 2 + 1;
  const index = new Int32Array(outSize * count);
  const weight = new Float32Array(outSize * count);
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale - 0.5;
    const first = Math.floor(centre - 2 * stretch) + 1;
    let total = 0;
    for (let k = 0; k < count; k++) {
      let i = first + k;
      let w = cubic((i - centre) / stretch);
      if (i < 0 || i >= inSize) {
        w = 0;
        i = 0;
      }
      index[o * count + k] = i;
      weight[o * count + k] = w;
      total += w;
    }
    for (let k = 0; k < count; k++) weight[o * count + k] /= total;
  }
  return {index, weight, count};
}

function resize(image, outWidth, outHeight) {
  const {width, height, data} = image;
  const across = taps(width, outWidth);
  const down = taps(height, outHeight);
  const middle = new Float32Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < across.count; k++) {
        const w = across.weight[x * across.count + k];
        const p = (y * width + across.index[x * across.count + k]) * 4;
        r += w * data[p]; g += w * data[p + 1]; b += w * data[p + 2];
      }
      const q = (y * outWidth + x) * 3;
      middle[q] = r; middle[q + 1] = g; middle[q + 2] = b;
    }
  }
  const out = new ImageData(outWidth, outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < down.count; k++) {
        const w = down.weight[y * down.count + k];
        const q = (down.index[y * down.count + k] * outWidth + x) * 3;
        r += w * middle[q]; g += w * middle[q + 1]; b += w * middle[q + 2];
      }
      const p = (y * outWidth + x) * 4;
      out.data[p] = Math.round(r); out.data[p + 1] = Math.round(g); out.data[p + 2] = Math.round(b); // clamps
      out.data[p + 3] = 255;
    }
  }
  return out;
}

function pngOf(canvas) {
  return new Promise((done) => canvas.toBlob(done, "image/png"));
}

// ---- the page ---------------------------------------------------------------------------------------------------

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function say(text) {
  $("status").textContent = text;
}

function choose(file) {
  if (!file) return;
  state.file = file;
  $("chosen").textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
  $("run").disabled = false;
  upscale();
}

function selectedVersions() {
  const chosen = [$("model-a").value, $("model-b").value].filter((v) => v);
  return [...new Set(chosen)].map((v) => JSON.parse(v));
}

async function upscale() {
  if (!state.file) return;
  showError("");
  $("run").disabled = true;
  try {
    await compute();
  } catch (error) {
    showError(error.message);
    say("");
  } finally {
    $("run").disabled = false;
  }
}

async function compute() {
  const file = state.file;
  const limit = state.config.max_body_bytes;
  if (limit && file.size * 4 / 3 + 1024 > limit) {
    throw new Error(sentence(`This photograph (${(file.size / 2 ** 20).toFixed(1)} MB) is larger than the requests ` +
      `of ${(limit / 2 ** 20).toFixed(0)} MB this server accepts once base64-encoded (--rest_api_max_body_bytes)`) +
      UPSCALE_ADVICE);
  }
  let input = new Uint8Array(await file.arrayBuffer());
  let original = null;
  if ($("downscale").checked) {
    let picture;
    try { picture = await decode(file); } catch (ignored) {
      throw new Error(sentence("This browser cannot read the file as an image, so it cannot downscale it"));
    }
    const width = picture.width - picture.width % SCALE, height = picture.height - picture.height % SCALE;
    if (!width || !height) throw new Error(sentence(`The photograph is smaller than ${SCALE}×${SCALE} pixels`));
    original = canvasOf(pixelsOf(picture, width, height));
    const small = canvasOf(resize(pixelsOf(original), width / SCALE, height / SCALE));
    input = new Uint8Array(await (await pngOf(small)).arrayBuffer());
  }
  const results = [];
  const notes = [];
  for (const version of selectedVersions()) {
    say(`${describeVersion(version)}: computing…`);
    const {blob, milliseconds} = await predict(version, input);
    const canvas = await decode(blob);
    const note = `answered in ${milliseconds.toFixed(0)} ms`;
    results.push({key: `${version.name}/${version.version}`, title: describeVersion(version), canvas, blob, note,
                  download: `${stem(file.name)}_x4_${version.name}_v${version.version}.png`});
    notes.push(`${describeVersion(version)}: ${canvas.width}×${canvas.height}, ${note}`);
  }
  let bicubic = null;
  try {
    const low = await decode(new Blob([input]));
    bicubic = canvasOf(resize(pixelsOf(low), low.width * SCALE, low.height * SCALE));
  } catch (ignored) { /* a file the server reads and this browser does not: no bicubic to show */ }
  if (bicubic) results.unshift({key: "bicubic", title: "bicubic ×4 (in this browser)", canvas: bicubic, note: ""});
  if (original) results.push({key: "original", title: "your original", canvas: original, note: ""});
  state.results = results;
  say(notes.join("; ") + ".");
  showResults();
}

function stem(name) {
  return (name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_") || "photo").slice(0, 80);
}

function fillSelect(select, results, preferred) {
  const previous = select.value;
  select.replaceChildren(...results.map((r) => new Option(r.title, r.key)));
  const keys = results.map((r) => r.key);
  select.value = keys.includes(previous) ? previous : (preferred.find((k) => keys.includes(k)) || keys[0]);
}

function showResults() {
  const results = state.results;
  const models = results.filter((r) => r.blob).map((r) => r.key);
  fillSelect($("left"), results, ["bicubic", "original"]);
  fillSelect($("right"), results, models);
  const first = results[0].canvas;
  state.zoom = {x: Math.floor(first.width / 2), y: Math.floor(first.height / 2)};
  const panes = results.map((result) => {
    const figure = document.createElement("figure");
    figure.className = "pane";
    figure.dataset.key = result.key;
    const caption = document.createElement("figcaption");
    caption.textContent = `${result.title} · ${result.canvas.width}×${result.canvas.height}` +
      (result.note ? ` · ${result.note}` : "");
    const zoom = document.createElement("canvas");
    zoom.className = "zoom";
    zoom.width = ZOOM;
    zoom.height = ZOOM;
    zoom.setAttribute("aria-label", `1:1 zoom of ${result.title}`);
    const whole = document.createElement("canvas");
    whole.className = "whole";
    copyInto(whole, result.canvas);
    whole.setAttribute("aria-label", result.title);
    figure.append(caption, zoom, whole);
    if (result.blob) {
      const link = document.createElement("a");
      link.className = "download";
      link.href = URL.createObjectURL(result.blob);
      link.download = result.download;
      link.textContent = `Download PNG (${result.download})`;
      figure.append(link);
    }
    followPointer(whole, result.canvas);
    return figure;
  });
  for (const old of document.querySelectorAll("#panes a.download")) URL.revokeObjectURL(old.href);
  $("panes").replaceChildren(...panes);
  $("results").hidden = false;
  drawCompare();
  drawZooms();
}

function copyInto(target, source) {
  target.width = source.width;
  target.height = source.height;
  target.getContext("2d").drawImage(source, 0, 0);
}

function find(key) {
  return state.results.find((r) => r.key === key);
}

function drawCompare() {
  const left = find($("left").value), right = find($("right").value);
  if (!left || !right) return;
  copyInto($("compare-left"), left.canvas);
  copyInto($("compare-right"), right.canvas);
  const split = Number($("split").value);
  $("compare-right").style.clipPath = `inset(0 0 0 ${split}%)`;
  $("compare-line").style.left = `${split}%`;
  $("split").setAttribute("aria-valuetext", `${split}% ${left.title}, ${100 - split}% ${right.title}`);
}

function drawZooms() {
  const {x, y} = state.zoom;
  for (const figure of document.querySelectorAll("#panes figure")) {
    const result = find(figure.dataset.key);
    const zoom = figure.querySelector("canvas.zoom");
    const context = zoom.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.fillStyle = "#777";
    context.fillRect(0, 0, ZOOM, ZOOM);
    context.drawImage(result.canvas, x - ZOOM / 2, y - ZOOM / 2, ZOOM, ZOOM, 0, 0, ZOOM, ZOOM);
  }
}

function followPointer(element, source) {
  element.addEventListener("pointermove", (event) => {
    const box = element.getBoundingClientRect();
    state.zoom = {x: Math.round((event.clientX - box.left) / box.width * source.width),
                  y: Math.round((event.clientY - box.top) / box.height * source.height)};
    drawZooms();
  });
}

function moveZoomByKeys(event) {
  const steps = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
  if (!(event.key in steps) || !state.results.length) return;
  event.preventDefault();
  const size = event.shiftKey ? ZOOM : 16;
  const {width, height} = state.results[0].canvas;
  const [dx, dy] = steps[event.key];
  state.zoom = {x: Math.min(Math.max(state.zoom.x + dx * size, 0), width),
                y: Math.min(Math.max(state.zoom.y + dy * size, 0), height)};
  drawZooms();
}

function describeLimits(config) {
  const side = Math.floor(Math.sqrt(config.max_pixels));
  return `This server accepts photographs of up to ${config.max_pixels.toLocaleString("en")} pixels (about ` +
    `${side}×${side}) and requests of up to ${(config.max_body_bytes / 2 ** 20).toFixed(0)} MB; larger ones are ` +
    "refused, as any client's request would be, and deadlines and memory admission apply as to any request." +
    UPSCALE_ADVICE;
}

async function start() {
  const drop = $("drop");
  $("file").addEventListener("change", () => choose($("file").files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  $("run").addEventListener("click", upscale);
  $("downscale").addEventListener("change", upscale);
  for (const id of ["left", "right", "split"]) $(id).addEventListener("input", drawCompare);
  $("compare").addEventListener("keydown", moveZoomByKeys);
  followPointer($("compare"), {get width() { return $("compare-left").width; },
                               get height() { return $("compare-left").height; }});
  let versions;
  try {
    versions = await readConfig();
  } catch (error) {
    $("limits").textContent = sentence(`The server's models could not be read (${error.message})`);
    return;
  }
  $("limits").textContent = describeLimits(state.config);
  if (!versions.length) {
    showError(sentence("The server has no model version available now; reload the page once one has loaded"));
    return;
  }
  const options = versions.map((v) => new Option(describeVersion(v), JSON.stringify(v)));
  $("model-a").replaceChildren(...options);
  $("model-b").replaceChildren(new Option("none", ""), ...options.map((o) => new Option(o.text, o.value)));
  const other = versions.find((v) => v.name !== versions[0].name);
  $("model-b").value = other ? JSON.stringify(other) : "";
  document.body.dataset.ready = "true"; // for people and tests: the model list is in
}

start();
