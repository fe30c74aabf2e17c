// ganmatch explore: method pickers submit on change; the editor re-renders on slider moves (the edited image,
// and both members of a chosen pair); flag buttons record suspect pairs; a face that fails to load gets the
// "no image" placeholder.
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), ms);
  };
}

function setupPickers() {
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

function editQuery(editor, image) {
  const query = new URLSearchParams({ image: image || editor.dataset.image });
  for (const slider of editor.querySelectorAll("input.direction")) {
    const value = parseFloat(slider.value);
    if (value !== 0) query.append("edit", slider.dataset.direction + ":" + slider.value);
  }
  return query;
}

function setupEditor() {
  const editor = document.getElementById("editor");
  if (!editor) return;
  const image = document.getElementById("edit-image");
  const status = document.getElementById("render-status");
  const sliders = editor.querySelectorAll("input.direction");

  image.addEventListener("load", () => { status.textContent = ""; image.dataset.loaded = image.src; });
  image.addEventListener("error", () => { status.textContent = "render failed or the renderer is busy; move the slider again"; });

  const refresh = debounce(() => {
    const query = editQuery(editor);
    status.textContent = "rendering…";
    for (const other of editor.querySelectorAll("img.edited")) {
      other.src = editor.dataset.renderUrl + "?" + editQuery(editor, other.dataset.image).toString();
    }
    fetch(editor.dataset.scoresUrl + "?" + query.toString())
      .then((resp) => (resp.ok ? resp.json() : Promise.reject(new Error(resp.statusText))))
      .then((data) => {
        for (const span of editor.querySelectorAll("span.score")) {
          const score = data.scores[span.dataset.direction];
          if (score !== undefined) span.textContent = "score " + (score >= 0 ? "+" : "") + score.toFixed(2);
        }
      })
      .catch(() => { status.textContent = "scores unavailable"; });
  }, 60);

  for (const slider of sliders) {
    const output = slider.parentElement.querySelector("output.strength");
    slider.addEventListener("input", () => {
      output.textContent = slider.value;
      refresh();
    });
  }
  const reset = document.getElementById("reset-sliders");
  if (reset) {
    reset.addEventListener("click", () => {
      for (const slider of sliders) {
        slider.value = 0;
        slider.parentElement.querySelector("output.strength").textContent = "0";
      }
      refresh();
    });
  }

  const interp = document.getElementById("interpolation");
  if (interp) {
    const slider = document.getElementById("interp-slider");
    const img = document.getElementById("interp-image");
    const out = document.getElementById("interp-t");
    const update = debounce(() => {
      const query = new URLSearchParams({ method: interp.dataset.method, pair: interp.dataset.pair, t: slider.value });
      img.src = editor.dataset.interpolateUrl + "?" + query.toString();
    }, 40);
    slider.addEventListener("input", () => { out.textContent = slider.value; update(); });
  }
}

function setupFlags() {
  const meta = document.querySelector('meta[name="ganmatch-token"]');
  if (!meta) return;
  for (const button of document.querySelectorAll("button.flag-pair")) {
    button.addEventListener("click", () => {
      const on = button.dataset.on === "1" ? "0" : "1";
      const query = new URLSearchParams({ method: button.dataset.method, pair: button.dataset.pair, on: on });
      fetch("/api/flag?" + query.toString(), { method: "POST", headers: { "X-Ganmatch-Token": meta.content } })
        .then((resp) => (resp.ok ? resp.json() : Promise.reject(new Error(resp.statusText))))
        .then((data) => {
          button.dataset.on = data.flagged ? "1" : "0";
          button.classList.toggle("on", data.flagged);
          button.textContent = data.flagged ? "flagged ⚑" : "flag";
        })
        .catch(() => { button.textContent = "flag failed"; });
    });
  }
}

function setupPlaceholders() {
  // a face whose file went missing after start-up: the same placeholder the server gives a missing file
  for (const img of document.querySelectorAll("figure.face img")) {
    const swap = () => {
      const box = document.createElement("div");
      box.className = "noimage";
      box.textContent = "no image";
      img.replaceWith(box);
    };
    if (img.complete && img.naturalWidth === 0 && img.src) swap();
    else img.addEventListener("error", swap);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupPickers();
  setupEditor();
  setupFlags();
  setupPlaceholders();
});
