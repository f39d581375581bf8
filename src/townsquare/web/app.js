// townsquare web client: sign in, pick a room, talk. No build step, no dependencies.
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);

const state = {
  access: sessionStorage.getItem("access"),
  refresh: sessionStorage.getItem("refresh"),
  me: null,
  socket: null,
  connected: false,
  retry: 0,
  room: null,               // name of the room on screen
  joined: new Set(),        // rooms joined on the current socket
  messages: new Map(),      // room -> Map(seq -> message)
  lastSeq: new Map(),       // room -> highest seq received, for `since` on reconnect
  pending: new Map(),       // client_id -> {room, body}: sent, not yet seen stored
  online: new Map(),        // room -> Map(user id -> name)
  typingTimers: new Map(),
  lastTypingSent: 0,
  refreshTimer: null,
  pingTimer: null,
};

function setStatus(text) {
  const el = $("#status");
  el.textContent = text;
  el.dataset.state = text;
}

function showError(where, text) {
  $(where).textContent = text || "";
}

function errorText(body, fallback) {
  if (!body || body.detail === undefined) return fallback;
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
}

async function api(method, path, { json, form, auth = true } = {}) {
  const headers = {};
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  if (auth && state.access) headers.Authorization = `Bearer ${state.access}`;
  let response = await fetch(path, { method, headers, body });
  if (response.status === 401 && auth && state.refresh && (await refreshTokens())) {
    headers.Authorization = `Bearer ${state.access}`;
    response = await fetch(path, { method, headers, body });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(data, `${response.status} ${response.statusText}`));
  return data;
}

function storeTokens(pair) {
  state.access = pair.access_token;
  state.refresh = pair.refresh_token;
  sessionStorage.setItem("access", state.access);
  sessionStorage.setItem("refresh", state.refresh);
  clearTimeout(state.refreshTimer);
  // Refresh a minute before expiry, and hand the new token to the open socket.
  const inMs = Math.max(10, pair.expires_in - 60) * 1000;
  state.refreshTimer = setTimeout(refreshTokens, inMs);
}

async function refreshTokens() {
  if (!state.refresh) return false;
  try {
    const pair = await api("POST", "/auth/refresh", {
      json: { refresh_token: state.refresh }, auth: false,
    });
    storeTokens(pair);
    send({ type: "refresh", token: state.access });
    return true;
  } catch {
    signOut();
    return false;
  }
}

function signOut() {
  const refresh = state.refresh;
  state.access = state.refresh = state.me = null;
  sessionStorage.clear();
  clearTimeout(state.refreshTimer);
  if (state.socket) state.socket.close(1000);
  state.socket = null;
  if (refresh) api("POST", "/auth/logout", { json: { refresh_token: refresh }, auth: false }).catch(() => {});
  $("#chat").hidden = true;
  $("#signin").hidden = false;
  $("#logout").hidden = true;
  $("#whoami").textContent = "";
  setStatus("offline");
}

async function login(email, password) {
  storeTokens(await api("POST", "/auth/token", { form: { username: email, password }, auth: false }));
  await start();
}

async function start() {
  state.me = await api("GET", "/me");
  $("#whoami").textContent = state.me.name;
  $("#signin").hidden = true;
  $("#chat").hidden = false;
  $("#logout").hidden = false;
  await loadRooms();
  connect();
}

async function loadRooms() {
  const rooms = await api("GET", "/rooms");
  const list = $("#rooms");
  list.replaceChildren();
  for (const room of rooms) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `# ${room.name}`;
    button.dataset.room = room.name;
    button.addEventListener("click", () => openRoom(room.name));
    item.append(button);
    list.append(item);
  }
  markCurrentRoom();
}

function markCurrentRoom() {
  for (const button of document.querySelectorAll("#rooms button")) {
    button.setAttribute("aria-current", String(button.dataset.room === state.room));
  }
}

// --- the socket -------------------------------------------------------------------

function connect() {
  if (!state.access) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  state.joined.clear();
  setStatus("connecting");
  // Browsers cannot set headers on a WebSocket, so the token goes in the first frame.
  socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token: state.access })));
  socket.addEventListener("message", (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    handle(frame);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.connected = false;
    clearInterval(state.pingTimer);
    setStatus("offline");
    if (!state.access) return;
    if (event.code === 1008) {
      // Policy: a bad or revoked token, or a flood. A refresh tells which: if it
      // fails the session is over (signed out); if it works, reconnect.
      refreshTokens().then((ok) => ok && reconnectSoon());
      return;
    }
    reconnectSoon();
  });
}

function reconnectSoon() {
  // Exponential backoff with jitter, so a restarted server is not stampeded.
  const delay = Math.min(30000, 500 * 2 ** state.retry) * (0.5 + Math.random() / 2);
  state.retry = Math.min(state.retry + 1, 6);
  setTimeout(connect, delay);
}

function send(frame) {
  if (state.socket && state.connected) state.socket.send(JSON.stringify(frame));
}

function join(room) {
  const since = state.lastSeq.get(room);
  send(since === undefined ? { type: "join", room } : { type: "join", room, since });
}

function handle(frame) {
  switch (frame.type) {
    case "welcome":
      state.connected = true;
      state.retry = 0;
      setStatus("online");
      clearInterval(state.pingTimer);
      // The server closes a client silent for `heartbeat.timeout`; ping at half the interval.
      state.pingTimer = setInterval(() => send({ type: "ping" }), Math.max(1, frame.heartbeat.interval / 2) * 1000);
      if (state.room) join(state.room);
      break;
    case "joined":
      onJoined(frame);
      break;
    case "message":
      addMessage(frame);
      break;
    case "presence":
      onPresence(frame);
      break;
    case "typing":
      onTyping(frame);
      break;
    case "error":
      showError("#chat-error", `${frame.code}: ${frame.detail}`);
      if (/token|expir|refresh/i.test(frame.code)) refreshTokens();
      break;
    case "bye":
      setStatus("connecting");
      break;
    default:
      break;
  }
}

async function onJoined(frame) {
  state.joined.add(frame.room);
  const online = new Map();
  for (const user of frame.online || []) online.set(userId(user), userName(user));
  state.online.set(frame.room, online);
  renderOnline();
  // Messages sent while the socket was down are sent again under the same client_id,
  // which the server stores once.
  for (const [clientId, item] of state.pending) {
    if (item.room === frame.room) send({ type: "send", room: item.room, body: item.body, client_id: clientId });
  }
  // First visit: show the latest page of history (a rejoin got the gap by `since`).
  if (!state.lastSeq.has(frame.room) && frame.seq > 0) {
    const page = await api("GET", `/rooms/${encodeURIComponent(frame.room)}/messages?before_seq=${frame.seq + 1}&limit=50`);
    for (const message of page) addMessage({ ...message, room: frame.room });
  }
  if (!state.lastSeq.has(frame.room)) state.lastSeq.set(frame.room, frame.seq);
}

const userId = (user) => (typeof user === "object" && user !== null ? user.id : user);
const userName = (user) => (typeof user === "object" && user !== null ? user.name : String(user));

function addMessage(message) {
  const room = message.room;
  if (!state.messages.has(room)) state.messages.set(room, new Map());
  state.messages.get(room).set(message.seq, message);
  if (message.seq > (state.lastSeq.get(room) ?? 0)) state.lastSeq.set(room, message.seq);
  if (message.client_id) state.pending.delete(message.client_id);
  if (room === state.room) renderMessages();
}

function renderMessages() {
  const list = $("#messages");
  const messages = [...(state.messages.get(state.room) || new Map()).values()].sort((a, b) => a.seq - b.seq);
  list.replaceChildren(...messages.map((message) => {
    const item = document.createElement("li");
    item.dataset.seq = message.seq;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = `#${message.seq}`;
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = userName(message.author);
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = message.body;
    item.append(seq, author, body);
    return item;
  }));
  list.scrollTop = list.scrollHeight;
}

function onPresence(frame) {
  const online = state.online.get(frame.room) || new Map();
  if (frame.state === "online") online.set(userId(frame.user), userName(frame.user));
  else online.delete(userId(frame.user));
  state.online.set(frame.room, online);
  renderOnline();
}

function renderOnline() {
  const online = state.online.get(state.room);
  $("#online").textContent = online ? `Online: ${[...online.values()].join(", ")}` : "";
}

function onTyping(frame) {
  if (frame.room !== state.room || userId(frame.user) === state.me.id) return;
  const el = $("#typing");
  el.textContent = `${userName(frame.user)} is typing…`;
  clearTimeout(state.typingTimers.get(frame.room));
  state.typingTimers.set(frame.room, setTimeout(() => { el.textContent = ""; }, 3000));
}

function openRoom(name) {
  if (state.room && state.room !== name && state.joined.has(state.room)) {
    send({ type: "leave", room: state.room });
    state.joined.delete(state.room);
  }
  state.room = name;
  $("#room").hidden = false;
  $("#room-title").textContent = `# ${name}`;
  $("#typing").textContent = "";
  markCurrentRoom();
  renderMessages();
  renderOnline();
  if (!state.joined.has(name)) join(name);
}

// --- forms --------------------------------------------------------------------------

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    showError("#signin-error", "");
    await login(data.get("email"), data.get("password"));
  } catch (error) {
    showError("#signin-error", error.message);
  }
});

$("#signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    showError("#signin-error", "");
    await api("POST", "/users", {
      json: { name: data.get("name"), email: data.get("email"), password: data.get("password") },
      auth: false,
    });
    await login(data.get("email"), data.get("password"));
  } catch (error) {
    showError("#signin-error", error.message);
  }
});

$("#room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = new FormData(event.target).get("name");
  try {
    showError("#chat-error", "");
    await api("POST", "/rooms", { json: { name } });
    event.target.reset();
    await loadRooms();
    openRoom(name);
  } catch (error) {
    showError("#chat-error", error.message);
  }
});

$("#send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.body;
  const body = input.value.trim();
  if (!body || !state.room) return;
  const clientId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  state.pending.set(clientId, { room: state.room, body });
  send({ type: "send", room: state.room, body, client_id: clientId });
  input.value = "";
});

$("#send-form").elements.body.addEventListener("input", () => {
  const now = Date.now();
  if (state.room && now - state.lastTypingSent > 2000) {
    state.lastTypingSent = now;
    send({ type: "typing", room: state.room });
  }
});

$("#logout").addEventListener("click", signOut);

if (state.access) start().catch(signOut);
