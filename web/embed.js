/*
 * embed.js: the digital-human client for any page, no build step.
 *
 *   <script src="https://host/embed.js"></script>
 *   <digital-human server="https://host" template="astronaut"></digital-human>
 *
 *   <digital-human server="https://host" template="astronaut" grant="…"></digital-human>
 *
 * defines the <digital-human> element (methods connect, speak, say, interrupt, talk, close;
 * events connected, speaking-started, speaking-ended, interrupted, closing, error, and for
 * talking: talk, user-speech-started, user-speech-ended, transcript, reply-paused,
 * reply-resumed) and window.DigitalHuman, whose Session class the chat page builds on.
 *
 * talk(true) sends the microphone (echo cancellation, noise suppression, auto gain) to the
 * server, which listens: turns, speech recognition, barge-in; talk(false) stops sending it.
 *
 * A public page never holds the server key: its backend mints a single-use grant
 * (POST /api/grants) and the page passes it as `grant` (a string, or an async function that
 * fetches a fresh one: it is called again on every reconnect).
 */
(() => {
  "use strict";
  if (window.DigitalHuman) return;  // loaded twice: keep the first definition

  const SCRIPT_ORIGIN = (() => {
    try { return new URL(document.currentScript.src).origin; } catch (_) { return location.origin; }
  })();
  const ICE_GATHER_TIMEOUT_MS = 5000;
  const DISCONNECT_GRACE_MS = 3000;
  const CLOSE_TIMEOUT_MS = 2000;
  const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
  const EVENT_NAMES = {
    speaking_started: "speaking-started",
    speaking_ended: "speaking-ended",
    interrupted: "interrupted",
    welcome_ended: "welcome-ended",
    closing: "closing",
    reply_started: "reply-started",
    reply_text: "reply-text",
    reply_ended: "reply-ended",
    turn_timing: "turn-timing",
    // Talking (the microphone): see talk().
    user_speech_started: "user-speech-started",
    user_speech_ended: "user-speech-ended",
    transcript: "transcript",
    reply_paused: "reply-paused",
    reply_resumed: "reply-resumed",
  };
  const MIC_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

  /** An HTTP error from the server; `status` and the server's `error` message. */
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.name = "ApiError";
      this.status = status;
    }
  }

  async function request(url, { method = "GET", token = null, body = null, contentType = null, timeoutMs = null } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (contentType) headers["Content-Type"] = contentType;
    const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
    let response;
    try {
      response = await fetch(url, { method, headers, body, mode: "cors", signal });
    } catch (err) {
      throw new ApiError(0, `cannot reach ${new URL(url).origin} (${err.message}); is it up, and is this page's origin allowed (--cors)?`);
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      const detail = (data && data.error) || text || response.statusText;
      throw new ApiError(response.status, `${response.status}: ${detail}`);
    }
    return data;
  }

  function waitIceGathering(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS);  // send what we have
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === "complete") done(); }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  function baseType(contentType) {
    // "audio/webm;codecs=opus" -> "audio/webm"; raw PCM (audio/L16, audio/pcm) keeps its rate.
    const type = (contentType || "").trim();
    const lower = type.toLowerCase();
    return lower.startsWith("audio/l16") || lower.startsWith("audio/pcm") ? type : type.split(";")[0].trim();
  }

  /**
   * Figures from two getStats() reports (the previous one may be null): fps, freezes,
   * round-trip, jitter-buffer delays over the interval and the A/V delay estimate.
   */
  function summarizeStats(report, previous) {
    const out = {
      fps: null, framesDecoded: 0, framesDropped: 0, freezeCount: 0, freezeDurationS: 0,
      width: null, height: null, videoCodec: null, rttMs: null,
      videoJitterBufferMs: null, audioJitterBufferMs: null, avDelayMs: null,
      audioSamplesReceived: 0, audioConcealedPct: null, audioLevel: null,
    };
    const before = {};
    if (previous) previous.forEach((s) => { before[s.id] = s; });
    const jitterMs = (s) => {
      const p = before[s.id];
      const count = s.jitterBufferEmittedCount - (p ? p.jitterBufferEmittedCount : 0);
      const delay = s.jitterBufferDelay - (p ? p.jitterBufferDelay : 0);
      return count > 0 ? (1000 * delay) / count : null;
    };
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.fps = s.framesPerSecond ?? null;
        out.framesDecoded = s.framesDecoded || 0;
        out.framesDropped = s.framesDropped || 0;
        out.freezeCount = s.freezeCount || 0;
        out.freezeDurationS = s.totalFreezesDuration || 0;
        out.width = s.frameWidth ?? null;
        out.height = s.frameHeight ?? null;
        out.videoJitterBufferMs = jitterMs(s);
        const codec = s.codecId && report.get(s.codecId);
        out.videoCodec = codec ? codec.mimeType : null;
      } else if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.audioSamplesReceived = s.totalSamplesReceived || 0;
        out.audioConcealedPct = s.totalSamplesReceived
          ? (100 * (s.concealedSamples || 0)) / s.totalSamplesReceived : null;
        out.audioLevel = s.audioLevel ?? null;
        out.audioJitterBufferMs = jitterMs(s);
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        if (s.currentRoundTripTime !== undefined) out.rttMs = 1000 * s.currentRoundTripTime;
      }
    });
    if (out.videoJitterBufferMs !== null && out.audioJitterBufferMs !== null) {
      // Positive: video is held longer than audio before playout (an estimate only).
      out.avDelayMs = out.videoJitterBufferMs - out.audioJitterBufferMs;
    }
    return out;
  }

  /**
   * One viewer session: the peer connection, the events channel and the control calls.
   * Events: connected, reconnecting, disconnected, speaking-started, speaking-ended,
   * interrupted, welcome-ended, message (every server event), error.
   */
  class Session extends EventTarget {
    constructor({ server = SCRIPT_ORIGIN, template, grant = null, key = null, reconnect = true } = {}) {
      super();
      if (!template) throw new Error("a template id is required");
      this.server = server.replace(/\/+$/, "");
      this.template = template;
      this.grant = grant || null;
      this.key = key || null;  // only for trusted pages on the server's own machine
      this.reconnect = reconnect;
      this.stream = new MediaStream();
      this.pc = null;
      this.sessionId = null;
      this.token = null;
      this.chatAvailable = false;  // the server has a reply engine (POST /api/sessions says so)
      this.info = null;
      this._closed = true;
      this._disconnectTimer = null;
      this._reconnecting = false;
      this._closingSeen = false;
      this._previousStats = null;
      this._mic = null;  // the microphone's MediaStream while talk(true)
      this._micSender = null;
    }

    url(path) { return `${this.server}${path}`; }

    /** Lists the server's templates and the renderer in use. */
    static templates(server = SCRIPT_ORIGIN) {
      return request(`${server.replace(/\/+$/, "")}/api/templates`);
    }

    async connect() {
      this._closed = false;
      await this._open();
    }

    /** The credential that opens a session: a fresh grant when `grant` is a function. */
    async _opener() {
      if (typeof this.grant === "function") {
        const fresh = await this.grant();
        if (!fresh) throw new ApiError(0, "the grant function returned no grant");
        return fresh;
      }
      return this.grant || this.key;
    }

    async _open() {
      const opener = await this._opener();
      const ice = await request(this.url("/api/ice-servers"), { token: opener }).catch(() => null);
      const pc = new RTCPeerConnection({ iceServers: (ice && ice.ice_servers) || [] });
      this.pc = pc;
      this._closingSeen = false;
      pc.addTransceiver("video", { direction: "recvonly" });
      // sendrecv even when silent: talk() later puts the microphone on it with no renegotiation.
      this._micSender = pc.addTransceiver("audio", { direction: "sendrecv" }).sender;
      if (this._mic) await this._micSender.replaceTrack(this._mic.getAudioTracks()[0]);
      this._listen(pc.createDataChannel("events"));
      pc.addEventListener("datachannel", (e) => this._listen(e.channel));
      pc.addEventListener("track", (e) => {
        this.stream.getTracks().filter((t) => t.kind === e.track.kind)
          .forEach((t) => this.stream.removeTrack(t));
        this.stream.addTrack(e.track);
      });
      pc.addEventListener("connectionstatechange", () => this._onState(pc));
      await pc.setLocalDescription(await pc.createOffer());
      await waitIceGathering(pc);
      let answer;
      try {
        answer = await request(this.url("/api/sessions"), {
          method: "POST",
          token: opener,
          contentType: "application/json",
          body: JSON.stringify({ template: this.template, sdp: pc.localDescription.sdp, type: "offer" }),
        });
      } catch (err) {
        pc.close();
        throw err;
      }
      if (this.pc !== pc) return;  // closed meanwhile
      this.sessionId = answer.session_id;
      this.token = answer.token;
      this.chatAvailable = answer.chat === true;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    }

    _listen(channel) {
      if (channel.label !== "events") return;
      channel.addEventListener("message", (e) => {
        let message;
        try { message = JSON.parse(e.data); } catch (_) { return; }
        this._emit("message", message);
        if (message.type === "closing") this._closingSeen = true;  // limit, idle or drain: stay closed
        const name = EVENT_NAMES[message.type];
        if (name) this._emit(name, message);
        if (message.type === "error") this._emit("error", { message: message.error, turn_id: message.turn_id || null });
      });
    }

    _onState(pc) {
      if (pc !== this.pc || this._closed) return;
      const state = pc.connectionState;
      clearTimeout(this._disconnectTimer);
      if (state === "connected") {
        this._emit("connected", { sessionId: this.sessionId, template: this.template });
      } else if (state === "failed") {
        this._drop("the connection failed");
      } else if (state === "disconnected") {
        this._disconnectTimer = setTimeout(() => this._drop("the connection was lost"), DISCONNECT_GRACE_MS);
      }
    }

    async _drop(reason) {
      const old = { id: this.sessionId, token: this.token, pc: this.pc };
      this.pc = null;
      this.sessionId = null;
      this.token = null;
      if (old.pc) old.pc.close();
      this._deleteQuietly(old.id, old.token);
      if (!this.reconnect || this._closed || this._closingSeen) {
        this._emit("disconnected", { reason: this._closingSeen ? "the server closed the session" : reason });
        return;
      }
      if (this._reconnecting) return;
      this._reconnecting = true;
      try {
        for (const [attempt, delay] of RECONNECT_DELAYS_MS.entries()) {
          this._emit("reconnecting", { reason, attempt: attempt + 1 });
          await new Promise((r) => setTimeout(r, delay));
          if (this._closed) return;
          try {
            await this._open();
            return;
          } catch (err) {
            this._emit("error", { message: `reconnect failed: ${err.message}`, status: err.status });
          }
        }
        this._closed = true;
        this._emit("disconnected", { reason: `${reason}; gave up reconnecting` });
      } finally {
        this._reconnecting = false;
      }
    }

    _deleteQuietly(id, token) {
      if (!id) return;
      request(this.url(`/api/sessions/${id}`), { method: "DELETE", token: token || this.key })
        .catch(() => {});  // the session may be gone with the network: the server times it out
    }

    _control(path, options = {}) {
      if (!this.sessionId) return Promise.reject(new ApiError(0, "not connected"));
      return request(this.url(`/api/sessions/${this.sessionId}${path}`), { token: this.token || this.key, ...options });
    }

    /** Sends audio (Blob, File, ArrayBuffer or typed array) to be spoken; 202 {utterance_id, duration_s}. */
    speak(audio, contentType) {
      const type = baseType(contentType || (audio && audio.type) || "");
      if (!type) return Promise.reject(new ApiError(0, "speak() needs the audio's content type"));
      return this._control("/speak", { method: "POST", body: audio, contentType: type });
    }

    /** Has the server synthesise `text` with its TTS and speak it. */
    say(text) {
      return this._control("/say", { method: "POST", contentType: "application/json", body: JSON.stringify({ text }) });
    }

    /** Asks the server's reply engine; resolves to the turn id (the reply-* events carry it). */
    async chat(text) {
      const body = JSON.stringify({ text });
      const reply = await this._control("/chat", { method: "POST", contentType: "application/json", body });
      return reply.turn_id;
    }

    interrupt() { return this._control("/interrupt", { method: "POST" }); }

    /** The live audio WebSocket (s16le PCM in, events out); the token rides as a subprotocol, not in the URL. */
    audioSocket() {
      if (!this.sessionId) throw new ApiError(0, "not connected");
      const url = this.url(`/api/sessions/${this.sessionId}/audio`).replace(/^http/, "ws");
      return new WebSocket(url, ["streamer-audio", `token.${this.token}`]);
    }

    /** Hands-free talking on or off: the microphone goes to the server, which listens for turns. */
    async talk(on = true) {
      if (on && !this._mic) {
        this._mic = await navigator.mediaDevices.getUserMedia({ audio: MIC_CONSTRAINTS });
      } else if (!on && this._mic) {
        this._mic.getTracks().forEach((t) => t.stop());
        this._mic = null;
      }
      if (this._micSender) await this._micSender.replaceTrack(this._mic ? this._mic.getAudioTracks()[0] : null);
      this._emit("talk", { on: Boolean(this._mic) });
      return Boolean(this._mic);
    }

    get talking() { return Boolean(this._mic); }

    /** The session JSON (state, queued seconds, counters, renderer). */
    async state() {
      this.info = await this._control("");
      return this.info;
    }

    /** summarizeStats() over the interval since the previous call. */
    async stats() {
      if (!this.pc) return null;
      const report = await this.pc.getStats();
      const summary = summarizeStats(report, this._previousStats);
      this._previousStats = report;
      return summary;
    }

    async close() {
      this._closed = true;
      clearTimeout(this._disconnectTimer);
      if (this._mic) this._mic.getTracks().forEach((t) => t.stop());
      this._mic = null;
      const { sessionId, token, pc } = this;
      this.pc = null;
      this.sessionId = null;
      this.token = null;
      // DELETE before closing the peer connection: the server ends a session whose peer
      // leaves, and a DELETE that arrives after that would find nothing.
      if (sessionId) {
        await request(this.url(`/api/sessions/${sessionId}`), {
          method: "DELETE", token: token || this.key, timeoutMs: CLOSE_TIMEOUT_MS,
        }).catch(() => {});
      }
      if (pc) pc.close();
    }

    _emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail })); }
  }

  const STYLE = `
    :host { display: inline-block; width: 360px; max-width: 100%; background: #000; position: relative; }
    video { display: block; width: 100%; height: auto; aspect-ratio: 1 / 1; object-fit: contain; background: #000; }
    button { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%);
             font: inherit; padding: .5em 1em; border-radius: .5em; border: 0; cursor: pointer; }
    button[hidden] { display: none; }
  `;
  const FORWARDED = ["connected", "speaking-started", "speaking-ended", "interrupted", "welcome-ended",
    "closing", "reconnecting", "disconnected", "error", "reply-started", "reply-text", "reply-ended", "turn-timing",
    "talk", "user-speech-started", "user-speech-ended", "transcript", "reply-paused", "reply-resumed"];

  /**
   * <digital-human server template grant>: a video of one session, and its controls as methods.
   * Set the `grant` property to an async function for reconnects with fresh grants.
   */
  class DigitalHumanElement extends HTMLElement {
    static get observedAttributes() { return ["server", "template", "grant", "key"]; }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<style>${STYLE}</style>
        <video part="video" autoplay playsinline></video>
        <button part="unmute" type="button" hidden>Tap to unmute</button>`;
      this.video = root.querySelector("video");
      this._unmute = root.querySelector("button");
      this._unmute.addEventListener("click", () => {
        this.video.muted = false;
        this._unmute.hidden = true;
        this.video.play().catch(() => {});
      });
      this.session = null;
    }

    get server() { return this.getAttribute("server") || SCRIPT_ORIGIN; }
    get template() { return this.getAttribute("template"); }
    get key() { return this.getAttribute("key"); }
    get grant() { return this._grant || this.getAttribute("grant"); }
    set grant(value) { this._grant = value; }

    attributeChangedCallback() {
      if (this.session) this._fail(new Error("server/template/grant changed: call close() then connect()"));
    }

    disconnectedCallback() { if (this.session) this.close(); }

    async connect() {
      if (this.session) await this.close();
      const session = new Session({ server: this.server, template: this.template, grant: this.grant, key: this.key });
      FORWARDED.forEach((name) => session.addEventListener(name, (e) => {
        this.dispatchEvent(new CustomEvent(name, { detail: e.detail }));
      }));
      this.session = session;
      this.video.srcObject = session.stream;
      try {
        await session.connect();
      } catch (err) {
        this.session = null;
        this._fail(err);
        throw err;
      }
      this._play();
      return session;
    }

    _play() {
      this.video.play().catch(() => {
        // Autoplay with sound was refused: play muted and offer a button.
        this.video.muted = true;
        this._unmute.hidden = false;
        this.video.play().catch(() => {});
      });
    }

    _fail(err) {
      this.dispatchEvent(new CustomEvent("error", { detail: { message: err.message, status: err.status } }));
    }

    _call(fn) {
      if (!this.session) {
        const err = new ApiError(0, "not connected: call connect() first");
        this._fail(err);
        return Promise.reject(err);
      }
      return fn(this.session).catch((err) => { this._fail(err); throw err; });
    }

    speak(audio, contentType) { return this._call((s) => s.speak(audio, contentType)); }
    say(text) { return this._call((s) => s.say(text)); }
    chat(text) { return this._call((s) => s.chat(text)); }
    get chatAvailable() { return Boolean(this.session && this.session.chatAvailable); }
    interrupt() { return this._call((s) => s.interrupt()); }
    talk(on = true) { return this._call((s) => s.talk(on)); }
    stats() { return this._call((s) => s.stats()); }

    async close() {
      const session = this.session;
      this.session = null;
      this.video.srcObject = null;
      if (session) await session.close();
    }
  }

  window.DigitalHuman = { Session, ApiError, summarizeStats, Element: DigitalHumanElement };
  if (!customElements.get("digital-human")) customElements.define("digital-human", DigitalHumanElement);
})();
