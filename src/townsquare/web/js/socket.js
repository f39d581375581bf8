// The one WebSocket: authenticate, keep alive, reconnect with backoff, and hand every
// frame to the app. The connection state is shown to the person (connected,
// connecting, offline).
import * as session from "./session.js";

export class Live {
  constructor({ onFrame, onState, onSignedOut }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.onSignedOut = onSignedOut;
    this.socket = null;
    this.ready = false; // welcomed: frames may be sent
    this.retry = 0;
    this.timer = null;
    this.pingTimer = null;
    this.lastFrameAt = 0;
    this.stopped = true;
    window.addEventListener("online", () => this.connectNow());
    session.on("token", (token) => this.send({ type: "refresh", token }));
  }

  start() {
    this.stopped = false;
    this.connectNow();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop(1000);
    this.setState("offline");
  }

  connectNow() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.retry = 0;
    if (!this.socket) this.connect();
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }

  connect() {
    const token = session.accessToken();
    if (this.stopped || !token) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    this.socket = socket;
    this.ready = false;
    this.setState("connecting");
    // A browser cannot set headers on a WebSocket, so the token goes in the first frame.
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token })));
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "welcome") this.welcomed(frame);
      else if (frame.type === "error" && frame.code === "token_expired") this.renew(token);
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => this.closed(socket, event.code, token));
  }

  welcomed(frame) {
    this.ready = true;
    this.retry = 0;
    this.setState("connected");
    clearInterval(this.pingTimer);
    const { interval, timeout } = frame.heartbeat;
    // The server closes a client silent for `timeout`: ping at half the interval. A
    // server silent past the timeout is gone (a cut network sends no close): start over.
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastFrameAt > timeout * 1000) this.drop(4000);
      else this.send({ type: "ping" });
    }, Math.max(1, interval / 2) * 1000);
  }

  // The access token ran out: one shared refresh (the socket's 1008 close and this
  // error may both ask), then hand the new token to the open socket.
  async renew(token) {
    try {
      if (!(await session.refresh(token))) this.onSignedOut();
    } catch {
      // Server unreachable: the socket's close will bring us back here.
    }
  }

  drop(code) {
    const socket = this.socket;
    if (!socket) return;
    this.closed(socket, code, null);
    try {
      socket.close(code === 1000 ? 1000 : 4000);
    } catch {
      // already closing
    }
  }

  closed(socket, code, token) {
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = false;
    clearInterval(this.pingTimer);
    this.onFrame({ type: "disconnected" });
    if (this.stopped) return;
    this.setState("offline");
    if (code === 1008 && token) {
      // Refused by policy: a bad, expired or revoked token (or a flood). A refresh tells
      // which: if it fails the session is over; if it works, come back.
      session.refresh(token).then(
        (ok) => (ok ? this.later() : this.onSignedOut()),
        () => this.later(),
      );
      return;
    }
    this.later();
  }

  later() {
    if (this.stopped) return;
    // Exponential backoff with jitter, so a restarted server is not stampeded.
    const delay = Math.min(15000, 400 * 2 ** this.retry) * (0.5 + Math.random() / 2);
    this.retry = Math.min(this.retry + 1, 8);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(frame) {
    if (!this.socket || !this.ready) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}
