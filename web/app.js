/* The chat page: pick a template, connect, talk (text, file, microphone), watch the figures. */
(() => {
  "use strict";
  const { Session } = window.DigitalHuman;
  const $ = (id) => document.getElementById(id);
  const STATS_PERIOD_MS = 1000;
  const FILE_TYPES = { wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg", oga: "audio/ogg", opus: "audio/ogg", webm: "audio/webm" };

  const ui = {
    renderer: $("renderer"), templates: $("templates"), templatesStatus: $("templates-status"),
    connect: $("connect"), disconnect: $("disconnect"), connection: $("connection"),
    video: $("video"), speaking: $("speaking"),
    sayForm: $("say-form"), sayText: $("say-text"), saySend: $("say-send"), sayLabel: $("say-label"),
    audioFile: $("audio-file"), audioSend: $("audio-send"), record: $("record"), interrupt: $("interrupt"),
    error: $("error"), transcript: $("transcript"),
    talk: $("talk-toggle"), talkStatus: $("talk-status"),
    stats: {
      fps: $("stat-fps"), freezes: $("stat-freezes"), rtt: $("stat-rtt"),
      av: $("stat-av"), concealed: $("stat-concealed"), video: $("stat-video"),
    },
  };
  const state = {
    session: null, statsTimer: null, recorder: null, speaking: new Set(), grant: takeGrant(),
    answers: new Map(),  // turn id → its transcript line (the answer streaming in)
  };
  window.chat = state;  // for the browser tests and for debugging from the console

  /**
   * A keyed server's page opens its session with a grant, never the key: the operator opens
   * the address `python run.py grant` prints (…/#grant=…). The fragment never reaches a server
   * or its logs, and is dropped from the address bar at once; a grant opens one session.
   */
  function takeGrant() {
    const grant = new URLSearchParams(location.hash.slice(1)).get("grant");
    if (grant) history.replaceState(null, "", location.pathname + location.search);
    return grant;
  }

  function log(text, kind = "system") {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    ui.transcript.append(item);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    return item;
  }

  /** With a reply engine, what the user types is a question: the answer streams in below it. */
  function setChatMode(chat) {
    document.body.dataset.chat = String(chat);
    ui.sayLabel.textContent = chat ? "Ask (Enter sends, Escape interrupts)" : "Line to say (Enter sends, Escape interrupts)";
    ui.saySend.textContent = chat ? "Send" : "Say";
    ui.sayText.maxLength = chat ? 2000 : 1000;
  }

  function answerLine(turnId) {
    let item = state.answers.get(turnId);
    if (!item) {
      item = log("thinking…", "avatar thinking");
      item.dataset.turn = turnId;
      item.dataset.text = "";
      state.answers.set(turnId, item);
    }
    return item;
  }

  function wireChat(session) {
    session.addEventListener("reply-started", (e) => answerLine(e.detail.turn_id));
    session.addEventListener("reply-text", (e) => {
      const item = answerLine(e.detail.turn_id);
      item.dataset.text += e.detail.text;
      item.classList.remove("thinking");
      item.textContent = `Avatar: ${item.dataset.text}`;
      ui.transcript.scrollTop = ui.transcript.scrollHeight;
    });
    session.addEventListener("reply-ended", (e) => {
      const item = answerLine(e.detail.turn_id);
      item.classList.remove("thinking");
      if (e.detail.interrupted) {
        item.classList.add("interrupted");
        item.textContent = `Avatar: ${e.detail.spoken_text}… (interrupted)`;
      } else if (!item.dataset.text) {
        item.textContent = "Avatar: (no answer)";
      }
      state.answers.delete(e.detail.turn_id);
    });
  }

  function showError(err) {
    const message = err && err.message ? err.message : String(err);
    ui.error.textContent = message;
    ui.error.hidden = false;
    log(`error: ${message}`, "system");
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.textContent = "";
  }

  function setConnected(connected) {
    for (const el of [ui.sayText, ui.saySend, ui.audioFile, ui.audioSend, ui.record, ui.interrupt, ui.disconnect, ui.talk]) {
      el.disabled = !connected;
    }
    ui.connect.disabled = connected || !selectedTemplate();
    ui.templates.disabled = connected;
  }

  function setSpeaking(speaking, label) {
    ui.speaking.dataset.speaking = String(speaking);
    ui.speaking.textContent = label || (speaking ? "speaking" : "silent");
  }

  function selectedTemplate() {
    const checked = ui.templates.querySelector("input[name=template]:checked");
    return checked ? checked.value : null;
  }

  async function loadTemplates() {
    try {
      const data = await Session.templates(location.origin);
      ui.renderer.textContent = `renderer: ${data.renderer || "unknown"}`;
      ui.templatesStatus.remove();
      data.templates.forEach((t, index) => {
        const label = document.createElement("label");
        label.className = "template";
        const input = Object.assign(document.createElement("input"), {
          type: "radio", name: "template", value: t.id, checked: index === 0, disabled: t.ready === false,
        });
        const img = Object.assign(document.createElement("img"), {
          src: `/api/templates/${encodeURIComponent(t.id)}/preview.jpg`, alt: "", width: 96, height: 96, loading: "lazy",
        });
        const name = Object.assign(document.createElement("span"), { textContent: t.name || t.id });
        const info = Object.assign(document.createElement("small"), {
          textContent: t.ready === false ? "preparing…"
            : `${t.kind}, ${t.width}×${t.height}${t.degraded ? `, degraded (${t.faces === "haar" ? "no face landmarks" : "no face parsing"})` : ""}`,
        });
        label.append(input, img, name, info);
        ui.templates.append(label);
      });
      ui.templates.addEventListener("change", () => setConnected(false));
      setConnected(false);
    } catch (err) {
      ui.templatesStatus.textContent = `Cannot load templates: ${err.message}`;
      showError(err);
    }
  }

  function wire(session) {
    session.addEventListener("connected", async () => {
      ui.connection.textContent = `connected (session ${session.sessionId})`;
      setConnected(true);
      setChatMode(session.chatAvailable);
      log("connected");
      try {
        const info = await session.state();
        if (info && info.renderer) ui.renderer.textContent = `renderer: ${info.renderer}`;
      } catch (err) {
        showError(err);
      }
    });
    session.addEventListener("reconnecting", (e) => {
      setConnected(false);
      ui.connect.disabled = true;
      ui.disconnect.disabled = false;
      ui.connection.textContent = `${e.detail.reason}: reconnecting (try ${e.detail.attempt})…`;
      log(`${e.detail.reason}; reconnecting`);
    });
    session.addEventListener("disconnected", (e) => {
      ui.connection.textContent = `disconnected: ${e.detail.reason}`;
      stopSession();
    });
    session.addEventListener("error", (e) => showError(e.detail));
    session.addEventListener("speaking-started", (e) => {
      state.speaking.add(e.detail.utterance_id);
      setSpeaking(true);
      log(`speaking (utterance ${e.detail.utterance_id})`);
    });
    session.addEventListener("speaking-ended", (e) => {
      state.speaking.delete(e.detail.utterance_id);
      if (state.speaking.size === 0) setSpeaking(false);
      log(`finished (utterance ${e.detail.utterance_id})`);
    });
    session.addEventListener("interrupted", (e) => {
      state.speaking.clear();
      setSpeaking(false);
      const at = typeof e.detail.position_s === "number" ? ` at ${e.detail.position_s.toFixed(1)} s` : "";
      log(`interrupted${at}`);
    });
    session.addEventListener("welcome-ended", () => log("welcome clip ended"));
    wireChat(session);
    wireTalk(session);
  }

  // --- Talk: hands-free listening ------------------------------------------------------------

  /** The talk status: off, listening, heard you, thinking, speaking. */
  function setTalkStatus(status) {
    ui.talkStatus.dataset.talk = status;
    ui.talkStatus.textContent = status === "off" ? "not listening" : status;
  }

  function wireTalk(session) {
    const listening = () => (session.talking ? "listening" : "off");
    session.addEventListener("talk", (e) => {
      ui.talk.setAttribute("aria-pressed", String(e.detail.on));
      ui.talk.textContent = e.detail.on ? "Stop talking" : "Talk";
      setTalkStatus(e.detail.on ? "listening" : "off");
    });
    session.addEventListener("user-speech-started", () => { if (session.talking) setTalkStatus("listening"); });
    session.addEventListener("user-speech-ended", () => { if (session.talking) setTalkStatus("heard you"); });
    session.addEventListener("transcript", (e) => {
      if (e.detail.text) log(`You (spoken): ${e.detail.text}`, "you");
      if (session.talking) setTalkStatus(e.detail.text ? "thinking" : "listening");
    });
    session.addEventListener("reply-paused", () => log("paused: you spoke over the answer"));
    session.addEventListener("reply-resumed", () => log("resumed: no words heard"));
    session.addEventListener("speaking-started", () => { if (session.talking) setTalkStatus("speaking"); });
    session.addEventListener("speaking-ended", () => setTalkStatus(listening()));
    session.addEventListener("interrupted", () => setTalkStatus(listening()));
  }

  async function toggleTalk() {
    const on = !(state.session && state.session.talking);
    const result = await control((s) => s.talk(on), on ? "microphone" : "stop talking");
    if (result === null && on) setTalkStatus("off");
  }

  async function connect() {
    const template = selectedTemplate();
    if (!template) return;
    clearError();
    ui.connect.disabled = true;
    ui.connection.textContent = "connecting…";
    const grant = state.grant;
    state.grant = null;  // single use: a later connect needs a fresh one
    const session = new Session({ server: location.origin, template, grant, reconnect: !grant });
    state.session = session;
    wire(session);
    ui.video.srcObject = session.stream;
    try {
      await session.connect();
      await ui.video.play().catch(() => {});
      state.statsTimer = setInterval(updateStats, STATS_PERIOD_MS);
    } catch (err) {
      showError(err.status === 401 ? new Error(`${err.message} (this server has a key: open the address`
        + " `python run.py grant --template <id>` prints, with a fresh grant)") : err);
      ui.connection.textContent = "not connected";
      state.session = null;
      setConnected(false);
    }
  }

  function stopSession() {
    clearInterval(state.statsTimer);
    state.statsTimer = null;
    if (state.recorder && state.recorder.state !== "inactive") state.recorder.stop();
    state.speaking.clear();
    setSpeaking(false);
    setConnected(false);
    setTalkStatus("off");
    ui.talk.setAttribute("aria-pressed", "false");
    ui.talk.textContent = "Talk";
  }

  async function disconnect() {
    const session = state.session;
    state.session = null;
    stopSession();
    ui.video.srcObject = null;
    ui.connection.textContent = "not connected";
    if (session) await session.close();
    log("disconnected");
  }

  const fmt = (value, digits, unit = "") => (value === null || value === undefined || Number.isNaN(value)
    ? "–" : `${Number(value).toFixed(digits)}${unit}`);

  async function updateStats() {
    if (!state.session) return;
    const s = await state.session.stats();
    if (!s) return;
    ui.stats.fps.textContent = fmt(s.fps, 0);
    ui.stats.freezes.textContent = `${s.freezeCount} (${s.freezeDurationS.toFixed(1)} s)`;
    ui.stats.rtt.textContent = fmt(s.rttMs, 0, " ms");
    ui.stats.av.textContent = fmt(s.avDelayMs, 0, " ms");
    ui.stats.concealed.textContent = fmt(s.audioConcealedPct, 1, " %");
    ui.stats.video.textContent = s.width ? `${s.width}×${s.height} ${(s.videoCodec || "").replace("video/", "")}` : "–";
  }

  async function control(action, description) {
    if (!state.session) return null;
    clearError();
    try {
      return await action(state.session);
    } catch (err) {
      showError(new Error(`${description} failed: ${err.message}`));
      return null;
    }
  }

  async function say(event) {
    event.preventDefault();
    const text = ui.sayText.value.trim();
    if (!text) return;
    ui.sayText.value = "";
    log(`You: ${text}`, "you");
    if (state.session && state.session.chatAvailable) {
      await control((s) => s.chat(text), "chat");
    } else {
      await control((s) => s.say(text), "say");
    }
  }

  function fileType(file) {
    if (file.type) return file.type;
    const ext = file.name.split(".").pop().toLowerCase();
    return FILE_TYPES[ext] || "application/octet-stream";
  }

  async function speakFile() {
    const file = ui.audioFile.files[0];
    if (!file) {
      showError(new Error("choose an audio file first"));
      ui.audioFile.focus();
      return;
    }
    log(`You sent ${file.name}`, "you");
    const result = await control((s) => s.speak(file, fileType(file)), "speak");
    if (result) log(`queued ${result.duration_s.toFixed(1)} s of audio`);
  }

  async function toggleRecording() {
    if (state.recorder && state.recorder.state === "recording") {
      state.recorder.stop();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError(new Error(`microphone unavailable: ${err.message}`));
      return;
    }
    const mimeType = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const chunks = [];
    recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", async () => {
      stream.getTracks().forEach((t) => t.stop());
      ui.record.setAttribute("aria-pressed", "false");
      ui.record.textContent = "Record from microphone";
      const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
      if (!blob.size || !state.session) return;
      log("You sent a recording", "you");
      const result = await control((s) => s.speak(blob, blob.type), "speak recording");
      if (result) log(`queued ${result.duration_s.toFixed(1)} s of audio`);
    });
    state.recorder = recorder;
    recorder.start();
    ui.record.setAttribute("aria-pressed", "true");
    ui.record.textContent = "Stop and send";
  }

  async function interrupt() {
    await control((s) => s.interrupt(), "interrupt");
  }

  ui.connect.addEventListener("click", connect);
  ui.disconnect.addEventListener("click", disconnect);
  ui.sayForm.addEventListener("submit", say);
  ui.audioSend.addEventListener("click", speakFile);
  ui.record.addEventListener("click", toggleRecording);
  ui.interrupt.addEventListener("click", interrupt);
  ui.talk.addEventListener("click", toggleTalk);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.session) {
      e.preventDefault();
      interrupt();
    }
  });
  window.addEventListener("pagehide", () => { if (state.session) state.session.close(); });
  loadTemplates();
})();
