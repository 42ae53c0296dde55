// Ponder's search explorer: run a search and watch its tree grow from the event
// stream of POST /v1/solve ("stream": true), or open a saved trace.
//
// No framework and nothing fetched from elsewhere: the page must work offline, served
// by Ponder itself. Model output is only ever written with textContent, never as HTML.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KEY_STORAGE = "ponder-api-key";
  const NODE_RADIUS = 7;
  const X_GAP = 22;
  const Y_GAP = 56;
  const MARGIN = 24;

  // Each strategy's main knobs; anything else goes in "More fields (JSON)".
  const NUMBER = "number";
  const BEAM = [
    { name: "n", type: NUMBER, value: 8 },
    { name: "beam_width", type: NUMBER, value: 2 },
    { name: "max_step_tokens", type: NUMBER, value: 32 },
  ];
  const PARAMS = {
    best_of_n: [
      { name: "n", type: NUMBER, value: 8 },
      { name: "selection", options: ["majority", "weighted", "max_reward"], value: "weighted" },
      { name: "max_new_tokens", type: NUMBER, value: 128 },
    ],
    beam_search: BEAM,
    dvts: BEAM,
    mcts: [
      { name: "simulations", type: NUMBER, value: 16 },
      { name: "expansion_width", type: NUMBER, value: 2 },
      { name: "wave_size", type: NUMBER, value: 4 },
      { name: "max_step_tokens", type: NUMBER, value: 32 },
    ],
    revision: [
      { name: "parallel_chains", type: NUMBER, value: 2 },
      { name: "max_revisions", type: NUMBER, value: 2 },
      { name: "max_new_tokens", type: NUMBER, value: 128 },
    ],
    particle_filtering: [
      { name: "n", type: NUMBER, value: 8 },
      { name: "resampling", options: ["systematic", "multinomial"], value: "systematic" },
      { name: "max_step_tokens", type: NUMBER, value: 32 },
    ],
  };
  const COMMON = [{ name: "seed", type: NUMBER, value: "" }];

  const $ = (id) => document.getElementById(id);
  const state = {
    nodes: new Map(), // id -> trace node, as last sent
    waves: 0,
    usage: null,
    remaining: null,
    elapsed: null,
    result: null,
    abort: null,
    drawPending: false,
  };

  // -- talking to the server --------------------------------------------------------

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const key = $("api-key").value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  async function errorOf(response) {
    let message = response.statusText || "request failed";
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (ignored) {
      // not JSON: keep the status text
    }
    return `${response.status}: ${message}`;
  }

  async function loadServer() {
    showError(null);
    try {
      const health = await (await fetch("/health")).json();
      $("server-info").textContent = `${health.model} · ${health.status}`;
      fillRewards(Object.keys(health.rewards || {}));
    } catch (error) {
      showError("cannot reach the server: " + error.message);
      return;
    }
    const response = await fetch("/v1/models", { headers: headers(false) });
    if (response.status === 401) {
      $("key-label").classList.add("needed");
      showError((await errorOf(response)) + " (enter the server's API key above)");
      fillStrategies(Object.keys(PARAMS));
      return;
    }
    $("key-label").classList.remove("needed");
    if (!response.ok) {
      showError(await errorOf(response));
      return;
    }
    const ids = (await response.json()).data.map((model) => model.id);
    const strategies = ids.filter((id) => id.includes("@")).map((id) => id.split("@")[1]);
    fillStrategies(strategies.length ? strategies : ["best_of_n"]);
  }

  function fillRewards(names) {
    const select = $("reward");
    select.replaceChildren(option("", "server default"));
    for (const name of names) select.append(option(name, name));
  }

  function fillStrategies(names) {
    const select = $("strategy");
    const previous = select.value;
    select.replaceChildren(...names.map((name) => option(name, name)));
    if (names.includes(previous)) select.value = previous;
    else if (names.includes("beam_search")) select.value = "beam_search";
    fillParams();
  }

  function option(value, text) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    return element;
  }

  function fillParams() {
    const fieldset = $("params");
    const legend = fieldset.querySelector("legend");
    fieldset.replaceChildren(legend);
    for (const spec of (PARAMS[$("strategy").value] || []).concat(COMMON)) {
      const label = document.createElement("label");
      label.append(spec.name + " ");
      let input;
      if (spec.options) {
        input = document.createElement("select");
        input.append(...spec.options.map((value) => option(value, value)));
      } else {
        input = document.createElement("input");
        input.type = "number";
        input.min = spec.name === "seed" ? "0" : "1";
      }
      input.value = spec.value;
      input.dataset.param = spec.name;
      input.dataset.kind = spec.options ? "text" : "number";
      label.append(input);
      fieldset.append(label);
    }
  }

  function requestBody() {
    const body = {
      question: $("question").value,
      strategy: $("strategy").value,
      stream: true,
      return_trace: true,
    };
    for (const input of $("params").querySelectorAll("[data-param]")) {
      if (input.value === "") continue;
      body[input.dataset.param] = input.dataset.kind === "number" ? Number(input.value) : input.value;
    }
    if ($("reward").value) body.reward = $("reward").value;
    const budget = {};
    for (const name of ["max_tokens", "max_reward_calls", "time_limit_s"]) {
      const value = $("budget-" + name).value;
      if (value !== "") budget[name] = Number(value);
    }
    if (Object.keys(budget).length) body.budget = budget;
    const extra = $("extra").value.trim();
    if (extra) Object.assign(body, JSON.parse(extra)); // a SyntaxError is shown to the user
    return body;
  }

  async function run(event) {
    event.preventDefault();
    let body;
    try {
      body = requestBody();
    } catch (error) {
      showError("More fields: " + error.message);
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value);
    reset();
    setRunning(true);
    setStatus("starting…");
    const abort = new AbortController();
    state.abort = abort;
    try {
      const response = await fetch("/v1/solve", {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(body),
        signal: abort.signal,
      });
      if (!response.ok) {
        if (response.status === 401) $("key-label").classList.add("needed");
        showError(await errorOf(response));
        setStatus("refused");
        return;
      }
      $("key-label").classList.remove("needed");
      await readEvents(response.body, handleEvent);
      if (!state.result) setStatus("the stream ended without a result");
    } catch (error) {
      if (error.name === "AbortError") setStatus("stopped (the server cancelled the search)");
      else showError(error.message);
    } finally {
      setRunning(false);
      state.abort = null;
    }
  }

  // Server-sent events from a fetch body (EventSource cannot POST): blocks end with a
  // blank line; `event:` names one, `data:` carries its JSON, `:` lines are comments.
  async function readEvents(stream, onEvent) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  function handleEvent(name, data) {
    if (name === "wave") {
      for (const node of data.nodes) state.nodes.set(node.id, node);
      if (!data.final) {
        state.waves = data.wave;
        state.usage = data.usage;
        state.remaining = data.remaining;
      }
      state.elapsed = data.elapsed_s;
      setStatus(data.final ? "finishing…" : `wave ${data.wave} · ${state.nodes.size} nodes`);
      scheduleDraw();
    } else if (name === "result") {
      showResult(data);
    } else if (name === "error") {
      showError((data.error && data.error.message) || "the search failed");
      setStatus("failed");
    }
  }

  function showResult(result) {
    state.result = result;
    state.usage = result.usage;
    state.remaining = null;
    if (result.trace) {
      state.nodes = new Map(result.trace.map((node) => [node.id, node]));
    }
    setStatus(`done · ${result.stopped_reason} · ${state.nodes.size} nodes`);
    const detail = $("answer-detail");
    detail.replaceChildren();
    const answer = document.createElement("p");
    answer.className = "final-answer";
    answer.textContent = result.answer === null || result.answer === undefined ? "no answer" : result.answer;
    const meta = document.createElement("p");
    meta.className = "meta";
    const parts = [`stopped: ${result.stopped_reason}`];
    if (result.strategy) parts.push(`strategy: ${result.strategy}`);
    if (result.reward) parts.push(`reward: ${result.reward}`);
    if (result.correct !== undefined) parts.push(result.correct ? "graded right" : "graded wrong");
    if (result.gold !== undefined) parts.push(`gold: ${result.gold}`);
    const decided = result.search && result.search.auto;
    if (decided) {
      parts.push(`auto: ${decided.difficulty} question → ${decided.chosen_strategy || "the probe's pick"}`);
    }
    meta.textContent = parts.join(" · ");
    detail.append(answer, meta);
    if (result.answer_text) {
      const text = document.createElement("pre");
      text.textContent = result.answer_text;
      detail.append(text);
    }
    scheduleDraw();
  }

  // -- drawing the tree ---------------------------------------------------------------

  function scheduleDraw() {
    if (state.drawPending) return;
    state.drawPending = true;
    requestAnimationFrame(() => {
      state.drawPending = false;
      draw();
      drawUsage();
    });
  }

  // A tidy layered layout: leaves side by side in depth-first order, a parent centred
  // over its children, one row per depth. Linear in the number of nodes.
  function layout(nodes) {
    const children = new Map();
    const roots = [];
    for (const node of [...nodes.values()].sort((a, b) => a.id - b.id)) {
      if (node.parent === null || !nodes.has(node.parent)) roots.push(node);
      else {
        if (!children.has(node.parent)) children.set(node.parent, []);
        children.get(node.parent).push(node);
      }
    }
    const position = new Map();
    let nextLeaf = 0;
    let depthMax = 0;
    const stack = roots.map((node) => ({ node, depth: 0, visited: false })).reverse();
    while (stack.length) {
      const item = stack.pop();
      const kids = children.get(item.node.id) || [];
      depthMax = Math.max(depthMax, item.depth);
      if (!kids.length) {
        position.set(item.node.id, { x: nextLeaf++, depth: item.depth });
      } else if (item.visited) {
        const xs = kids.map((kid) => position.get(kid.id).x);
        position.set(item.node.id, { x: (Math.min(...xs) + Math.max(...xs)) / 2, depth: item.depth });
      } else {
        stack.push({ ...item, visited: true });
        for (let i = kids.length - 1; i >= 0; i--) stack.push({ node: kids[i], depth: item.depth + 1, visited: false });
      }
    }
    return { position, width: Math.max(nextLeaf, 1), depth: depthMax };
  }

  function colour(score) {
    if (score === null || score === undefined) return "#9aa0a6";
    const clamped = Math.max(0, Math.min(1, score));
    return `hsl(${Math.round(clamped * 120)}, 65%, 45%)`;
  }

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  function draw() {
    const svg = $("tree");
    const { position, width, depth } = layout(state.nodes);
    const pixelsWide = MARGIN * 2 + (width - 1) * X_GAP;
    const pixelsHigh = MARGIN * 2 + depth * Y_GAP;
    svg.setAttribute("width", Math.max(pixelsWide, 320));
    svg.setAttribute("height", Math.max(pixelsHigh, 120));
    svg.setAttribute("viewBox", `0 0 ${Math.max(pixelsWide, 320)} ${Math.max(pixelsHigh, 120)}`);
    svg.dataset.waves = String(state.waves);
    const at = (id) => {
      const p = position.get(id);
      return { x: MARGIN + p.x * X_GAP, y: MARGIN + p.depth * Y_GAP };
    };
    const edges = svgElement("g", { class: "edges" });
    const circles = svgElement("g", { class: "nodes" });
    for (const node of state.nodes.values()) {
      const here = at(node.id);
      if (node.parent !== null && position.has(node.parent)) {
        const parent = state.nodes.get(node.parent);
        const there = at(node.parent);
        const onPath = node.chosen && parent.chosen;
        edges.append(svgElement("line", {
          x1: there.x, y1: there.y, x2: here.x, y2: here.y,
          class: onPath ? "edge chosen" : "edge",
        }));
      }
      const circle = svgElement("circle", {
        cx: here.x, cy: here.y, r: node.parent === null ? NODE_RADIUS + 2 : NODE_RADIUS,
        fill: colour(node.score),
        class: "node" + (node.chosen ? " chosen" : "") + (node.id === state.selected ? " selected" : ""),
        "data-node-id": node.id,
        tabindex: "0",
      });
      const title = svgElement("title", {});
      title.textContent = summary(node) + (node.text ? "\n" + node.text.slice(0, 240) : "");
      circle.append(title);
      circles.append(circle);
    }
    svg.replaceChildren(edges, circles);
  }

  function summary(node) {
    const parts = [`#${node.id}`, `${node.num_tokens} tok`];
    if (node.score !== null && node.score !== undefined) parts.push(`score ${node.score.toFixed(3)}`);
    if (node.visits !== null && node.visits !== undefined) parts.push(`visits ${node.visits}`);
    if (node.value !== null && node.value !== undefined) parts.push(`value ${node.value.toFixed(3)}`);
    if (node.weight !== null && node.weight !== undefined) parts.push(`weight ${node.weight.toFixed(3)}`);
    if (node.chosen) parts.push("chosen");
    return parts.join(" · ");
  }

  function showNode(id) {
    const node = state.nodes.get(id);
    if (!node) return;
    state.selected = id;
    const detail = $("node-detail");
    const head = document.createElement("p");
    head.className = "meta";
    head.textContent = summary(node) + (node.parent === null ? " · the prompt" : ` · parent #${node.parent}`);
    const step = document.createElement("pre");
    step.textContent = node.parent === null ? "(the question and system prompt)" : node.text;
    const path = [];
    for (let at = node; at && at.parent !== null; at = state.nodes.get(at.parent)) path.unshift(at.text);
    const whole = document.createElement("details");
    const label = document.createElement("summary");
    label.textContent = "the whole path to here";
    const pathText = document.createElement("pre");
    pathText.textContent = path.join("");
    whole.append(label, pathText);
    detail.replaceChildren(head, step, whole);
    scheduleDraw();
  }

  function drawUsage() {
    const list = $("usage-list");
    list.replaceChildren();
    const usage = state.usage;
    if (!usage) return;
    const rows = [
      ["generated tokens", usage.generated_tokens],
      ["prompt tokens", usage.prompt_tokens],
      ["cached prompt share", usage.prompt_tokens ? (usage.cached_prompt_tokens / usage.prompt_tokens).toFixed(2) : "–"],
      ["engine calls", usage.engine_calls],
      ["reward calls", usage.reward_calls],
      ["nodes", usage.nodes],
      ["waves", state.waves],
    ];
    if (state.elapsed !== null) rows.push(["elapsed (s)", state.elapsed.toFixed(1)]);
    if (state.remaining) {
      const left = state.remaining;
      rows.push(["tokens left", left.tokens === null ? "unlimited" : left.tokens]);
      rows.push(["reward calls left", left.reward_calls === null ? "unlimited" : left.reward_calls]);
    }
    if (state.result) rows.push(["stopped", state.result.stopped_reason]);
    for (const [name, value] of rows) {
      const term = document.createElement("dt");
      term.textContent = name;
      const description = document.createElement("dd");
      description.textContent = String(value);
      description.dataset.usage = name;
      list.append(term, description);
    }
  }

  // -- saved traces ---------------------------------------------------------------------

  function traceOfRow(row) {
    if (row.trace) return row.trace;
    if (!row.samples) return null;
    // A best-of-N row without its tree: the prompt and one leaf per graded sample.
    const leaves = row.samples.map((sample, i) => ({
      id: i + 1, parent: 0,
      text: sample.text || `(answer ${sample.answer}; run the bench with --keep-texts for the text)`,
      num_tokens: sample.num_tokens, score: sample.score,
      chosen: sample.answer !== null && sample.answer === row.server_answer,
      visits: null, value: null, weight: null,
    }));
    return [{ id: 0, parent: null, text: "", num_tokens: 0, chosen: true, score: null }].concat(leaves);
  }

  function openRow(row) {
    reset();
    const trace = row.trace ? row.trace : traceOfRow(row);
    if (!trace) {
      showError("this row has no trace and no samples: run the bench with --param return_trace=true");
      return;
    }
    state.nodes = new Map(trace.map((node) => [node.id, node]));
    if (row.question) $("question").value = row.question;
    showResult({ ...row, trace, stopped_reason: row.stopped_reason || "–" });
  }

  async function openFile() {
    const file = $("trace-file").files[0];
    if (!file) return;
    showError(null);
    const text = await file.text();
    let rows;
    try {
      rows = [JSON.parse(text)];
    } catch (notOneObject) {
      try {
        rows = text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
      } catch (error) {
        showError(`${file.name} is neither JSON nor JSON lines: ${error.message}`);
        return;
      }
    }
    const usable = rows.filter((row) => row && (row.trace || row.samples));
    if (!usable.length) {
      showError(`${file.name} holds no trace: save a /v1/solve response made with return_trace, or bench rows`);
      return;
    }
    const picker = $("trace-row");
    picker.hidden = usable.length === 1;
    picker.replaceChildren(...usable.map((row, i) => option(String(i), rowLabel(row, i))));
    picker.onchange = () => openRow(usable[Number(picker.value)]);
    openRow(usable[0]);
  }

  function rowLabel(row, i) {
    if (!row.problem_id) return `response ${i + 1}`;
    const mark = row.correct === undefined ? "" : row.correct ? " ✓" : " ✗";
    return `${row.problem_id} · ${row.label || row.strategy} · ${row.setting || ""}${mark}`;
  }

  // -- page state ---------------------------------------------------------------------

  function reset() {
    state.nodes = new Map();
    state.waves = 0;
    state.usage = null;
    state.remaining = null;
    state.elapsed = null;
    state.result = null;
    state.selected = null;
    $("answer-detail").textContent = "–";
    $("node-detail").textContent = "Click a node to read its step.";
    showError(null);
    scheduleDraw();
  }

  function setRunning(running) {
    $("run").disabled = running;
    $("stop").disabled = !running;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(message) {
    const box = $("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
    $("strategy").addEventListener("change", fillParams);
    $("run-form").addEventListener("submit", run);
    $("stop").addEventListener("click", () => state.abort && state.abort.abort());
    $("api-key").addEventListener("change", () => {
      sessionStorage.setItem(KEY_STORAGE, $("api-key").value);
      loadServer();
    });
    $("trace-file").addEventListener("change", openFile);
    $("tree").addEventListener("click", (event) => {
      const id = event.target.getAttribute && event.target.getAttribute("data-node-id");
      if (id !== null) showNode(Number(id));
    });
    $("tree").addEventListener("keydown", (event) => {
      const id = event.target.getAttribute && event.target.getAttribute("data-node-id");
      if (id !== null && (event.key === "Enter" || event.key === " ")) showNode(Number(id));
    });
    loadServer();
  });
})();
