// vlbench example browser: filters, the example table, and one example's scores and attention maps.
// Reads window.VLBENCH_GROUP (written by `vlbench report`); no server, no network.
"use strict";

const group = window.VLBENCH_GROUP;
const HEATMAP_PIXELS = 96;
const COLORMAP = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]]; // inferno stops

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function option(value, label) {
  return element("option", { value, text: label });
}

function tagKeys() {
  const keys = new Map();
  for (const example of group.examples) {
    for (const [key, value] of Object.entries(example.tags)) {
      if (!keys.has(key)) keys.set(key, new Set());
      keys.get(key).add(value);
    }
  }
  return keys;
}

function setUpFilters() {
  const metric = document.getElementById("metric");
  for (const name of group.metrics) metric.append(option(name, name));
  const tags = document.getElementById("tag-filters");
  for (const [key, values] of tagKeys()) {
    const select = element("select", { "data-tag": key, class: "tag-filter" }, [option("", "any")]);
    for (const value of [...values].sort()) select.append(option(value, value));
    tags.append(element("label", {}, [`${key} `, select]));
  }
  for (const id of ["right", "wrong"]) {
    const select = document.getElementById(id);
    select.append(option("", "any matcher"));
    group.runs.forEach((run, index) => select.append(option(String(index), run.label)));
  }
  document.getElementById("filters").addEventListener("change", render);
}

function correct(run, metric) {
  return run !== null && run.outcomes[metric] >= 1;
}

function visible(example, metric) {
  for (const select of document.querySelectorAll(".tag-filter")) {
    if (select.value && example.tags[select.dataset.tag] !== select.value) return false;
  }
  const right = document.getElementById("right").value;
  const wrong = document.getElementById("wrong").value;
  if (right !== "" && !correct(example.runs[Number(right)], metric)) return false;
  if (wrong !== "" && (example.runs[Number(wrong)] === null || correct(example.runs[Number(wrong)], metric))) return false;
  return true;
}

function thumbnails(example) {
  if (!example.images) return element("span", { class: "note", text: "no record" });
  return element("span", { class: "thumbs" }, example.images.map((image) => {
    const thumbnail = group.thumbnails[image.key];
    return thumbnail ? element("img", { src: thumbnail, alt: image.key, title: image.key, class: "thumb" }) : element("span", { class: "note", text: image.key });
  }));
}

function positiveTexts(example) {
  if (!example.texts) return "";
  const indices = [...new Set(example.positives.map(([, text]) => text))];
  const shown = indices.map((index) => example.texts[index]).join(" / ");
  return example.texts.length > indices.length ? `${shown}  (+${example.texts.length - indices.length} other)` : shown;
}

function render() {
  const metric = document.getElementById("metric").value;
  const head = document.querySelector("#examples thead");
  head.replaceChildren(element("tr", {}, [
    element("th", { text: "example" }), element("th", { text: "images" }), element("th", { text: "positive text" }),
    ...group.runs.map((run) => element("th", { text: run.label })),
  ]));
  const rows = [];
  for (const example of group.examples) {
    if (!visible(example, metric)) continue;
    const marks = example.runs.map((run) => run === null
      ? element("td", { class: "missing", text: "–" })
      : element("td", { class: correct(run, metric) ? "right" : "wrong", text: correct(run, metric) ? "✓" : "✗" }));
    const row = element("tr", { class: "example", "data-id": example.id }, [
      element("td", { text: example.id }), element("td", {}, [thumbnails(example)]), element("td", { text: positiveTexts(example) }), ...marks,
    ]);
    row.addEventListener("click", () => showExample(example, row));
    rows.push(row);
  }
  document.querySelector("#examples tbody").replaceChildren(...rows);
  document.getElementById("shown").textContent = `${rows.length} of ${group.examples.length} examples shown`;
}

function scoreTable(example, run) {
  const texts = example.texts || run.scores[0].map((_, index) => `text ${index}`);
  const best = Math.max(...run.scores.flat());
  const positive = new Set(example.positives.map(([image, text]) => `${image},${text}`));
  const header = element("tr", {}, [element("th", { text: "image \\ text" }), ...texts.map((text, index) => element("th", { text: `${index}: ${text}` }))]);
  const rows = run.scores.map((row, image) => element("tr", {}, [
    element("th", { text: example.images ? example.images[image].key : String(image) }),
    ...row.map((value, text) => element("td", {
      class: [value === best ? "best" : "", positive.has(`${image},${text}`) ? "positive" : ""].join(" ").trim(),
      text: value.toFixed(4),
    })),
  ]));
  return element("table", { class: "scores" }, [element("thead", {}, [header]), element("tbody", {}, rows)]);
}

function colour(value) {
  const position = (value / 255) * (COLORMAP.length - 1);
  const low = Math.min(Math.floor(position), COLORMAP.length - 2);
  const mix = position - low;
  return COLORMAP[low].map((channel, index) => Math.round(channel + (COLORMAP[low + 1][index] - channel) * mix));
}

function decode(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let index = 0; index < text.length; index += 1) bytes[index] = text.charCodeAt(index);
  return bytes;
}

async function heatmap(thumbnail, size, values) {
  const canvas = element("canvas", { width: HEATMAP_PIXELS, height: HEATMAP_PIXELS });
  const context = canvas.getContext("2d");
  context.fillStyle = "#888";
  context.fillRect(0, 0, HEATMAP_PIXELS, HEATMAP_PIXELS);
  if (thumbnail) {
    const base = new Image();
    base.src = thumbnail;
    await base.decode();
    context.drawImage(base, 0, 0, HEATMAP_PIXELS, HEATMAP_PIXELS);
  }
  const grid = element("canvas", { width: size, height: size });
  const pixels = grid.getContext("2d").createImageData(size, size);
  values.forEach((value, index) => {
    const [red, green, blue] = colour(value);
    pixels.data.set([red, green, blue, 255], index * 4);
  });
  grid.getContext("2d").putImageData(pixels, 0, 0);
  context.globalAlpha = 0.6;
  context.imageSmoothingEnabled = true;
  context.drawImage(grid, 0, 0, HEATMAP_PIXELS, HEATMAP_PIXELS);
  const image = element("img", { class: "heatmap", alt: "attention map", width: HEATMAP_PIXELS, height: HEATMAP_PIXELS });
  image.src = canvas.toDataURL("image/png");
  return image;
}

async function attentionSection(example, run) {
  const section = element("div", { class: "attention" });
  const cells = run.attention.size * run.attention.size;
  for (const pair of run.attention.pairs) {
    const thumbnail = example.images ? group.thumbnails[example.images[pair.image].key] : null;
    const text = example.texts ? example.texts[pair.text] : `text ${pair.text}`;
    const maps = decode(pair.maps);
    const strip = element("div", { class: "strip" });
    for (let token = 0; token < pair.tokens.length; token += 1) {
      const image = await heatmap(thumbnail, run.attention.size, maps.subarray(token * cells, (token + 1) * cells));
      strip.append(element("figure", {}, [image, element("figcaption", { text: pair.tokens[token] })]));
    }
    const key = example.images ? example.images[pair.image].key : pair.image;
    section.append(element("h4", { text: `image ${key} × “${text}”` }), strip);
  }
  return section;
}

async function showExample(example, row) {
  document.querySelectorAll("tr.selected").forEach((selected) => selected.classList.remove("selected"));
  row.classList.add("selected");
  const detail = document.getElementById("detail");
  const tags = Object.entries(example.tags).map(([key, value]) => `${key}=${value}`).join(", ");
  const parts = [element("h2", { text: example.id }), element("p", { class: "note", text: tags })];
  if (example.texts) {
    parts.push(element("ol", { start: "0", class: "texts" }, example.texts.map((text, index) =>
      element("li", { class: example.positives.some(([, positive]) => positive === index) ? "positive" : "", text }))));
  }
  for (const [index, run] of example.runs.entries()) {
    if (run === null) continue;
    parts.push(element("h3", { text: group.runs[index].label }), scoreTable(example, run));
    if (run.attention) parts.push(await attentionSection(example, run));
  }
  detail.replaceChildren(...parts);
  detail.dataset.example = example.id;
}

setUpFilters();
render();
