// The chat: the room list with unread counts, one open room with its history (paged
// back on scroll), live messages, presence, typing, and an outbox of messages not yet
// confirmed by the server (shown as "sending", or "failed" with a retry that keeps
// the message's client_id, so a retry is never stored twice).
import { api, ApiError, room as roomPath } from "./api.js";
import { $, clockTime, dayKey, dayLabel, errorMessage, fullTime, h } from "./dom.js";

const PAGE = 100; // messages per page of scroll-back
const LATEST = 50; // messages shown when a room is opened
const GAP_PAGE = 200;
const GAP_MAX = 1000; // a larger gap than this is not paged: the room starts over at its end
const LIVE_ROOMS = 50; // rooms joined live (for unread counts); others are polled
const KEEP_IN_BACKGROUND = 2000; // messages kept per room not on screen
const POLL_VISIBLE_MS = 10000;
const POLL_HIDDEN_MS = 60000;
const TYPING_SEND_MS = 2500;
const TYPING_SHOW_MS = 4000;
const CONFIRM_MS = 15000;
const GROUP_MS = 5 * 60000;

// REQUIRE_VERIFIED_EMAIL: the server refuses joins (and posts) until the address is
// verified; the banner above offers a new link.
const MUST_VERIFY =
  "Verify your email address to join this room and post in it: follow the link in the mail we sent you (the banner above sends a new one).";

const LEFT_REASONS = {
  removed: "You were removed from this room.",
  room_deleted: "This room was deleted.",
  access_revoked: "You no longer have access to this room.",
};

// Redraw room buttons without taking the keyboard focus away from the one it is on.
function keepingFocus(redraw) {
  const focused = document.activeElement?.closest?.("#rooms button")?.dataset.room;
  redraw();
  if (focused !== undefined) $(`#rooms button[data-room="${CSS.escape(focused)}"]`)?.focus();
}

class Room {
  constructor(info) {
    this.info = info;
    this.messages = new Map(); // seq -> message
    this.seq = null; // last seq received without a gap (for `join` with `since`)
    this.joined = false;
    this.joining = false; // a join was sent on this connection, its `joined` not yet here
    this.historyLoaded = false;
    this.reachedStart = false;
    this.loadingOlder = false;
    this.online = new Map(); // user id -> name, while connected
    this.onlineCount = 0;
    this.typing = new Map(); // user id -> {name, timer}
    this.notice = "";
  }

  get name() {
    return this.info.name;
  }

  get latest() {
    let highest = Math.max(this.info.last_seq || 0, this.seq || 0);
    for (const seq of this.messages.keys()) if (seq > highest) highest = seq;
    return highest;
  }

  get oldest() {
    let lowest = null;
    for (const seq of this.messages.keys()) if (lowest === null || seq < lowest) lowest = seq;
    return lowest;
  }

  sorted() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }
}

export class Chat {
  constructor({ live, toast }) {
    this.live = live;
    this.toast = toast;
    this.me = null;
    this.rooms = new Map();
    this.current = null;
    this.outbox = new Map(); // client_id -> {room, body, status, error, timer}
    this.reads = {};
    this.joinQueue = [];
    this.joinTimer = null;
    this.pollTimer = null;
    this.lastPoll = 0;
    this.lastTypingSent = 0;
    this.renderedUpTo = 0; // highest seq rendered in the open room
    this.active = false;
    this.discovering = false;
    this.mustVerify = false; // a join was refused: the address is not verified
    this.bind();
  }

  // -- lifecycle -------------------------------------------------------------------

  async start(me) {
    this.me = me;
    this.active = true;
    const stored = localStorage.getItem(this.readsKey());
    const firstVisit = stored === null;
    this.reads = firstVisit ? {} : JSON.parse(stored);
    this.discovering = !firstVisit;
    await this.loadRooms();
    this.discovering = true;
    if (firstVisit) {
      // First visit on this browser: what is there now counts as read; rooms that
      // appear from now on, and messages that arrive, are new.
      this.reads = {};
      for (const room of this.rooms.values()) this.reads[room.name] = room.latest;
      this.saveReads();
      this.renderRoomList();
    }
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && this.rooms.has(wanted)) this.open(wanted, { focus: false });
    else this.showNoRoom();
    this.schedulePoll();
  }

  stop() {
    this.active = false;
    clearTimeout(this.pollTimer);
    clearTimeout(this.joinTimer);
    for (const item of this.outbox.values()) clearTimeout(item.timer);
    for (const room of this.rooms.values()) for (const t of room.typing.values()) clearTimeout(t.timer);
    this.me = null;
    this.rooms.clear();
    this.outbox.clear();
    this.joinQueue = [];
    this.current = null;
    this.reads = {};
    this.discovering = false;
    this.mustVerify = false;
    $("#rooms").replaceChildren();
    $("#messages").replaceChildren();
    $("#room-title").textContent = "";
    $("#room-topic").textContent = "";
    $("#online").textContent = "";
    $("#typing").textContent = "";
    $("#history-state").textContent = "";
    $("#room-notice").hidden = true;
    $("#room").hidden = true;
    $("#composer").reset();
    if (location.hash) history.replaceState(null, "", location.pathname);
  }

  readsKey() {
    return `townsquare:read:${this.me.id}`;
  }

  saveReads() {
    if (this.me) localStorage.setItem(this.readsKey(), JSON.stringify(this.reads));
  }

  // -- the room list -----------------------------------------------------------------

  async loadRooms() {
    const found = [];
    for (let skip = 0; skip < 300; skip += 100) {
      const page = await api("GET", `/rooms?skip=${skip}&limit=100`);
      found.push(...page);
      if (page.length < 100) break;
    }
    if (!this.active) return;
    this.lastPoll = Date.now();
    const names = new Set(found.map((info) => info.name));
    for (const name of [...this.rooms.keys()]) {
      if (!names.has(name)) this.forget(name);
    }
    for (const info of found) {
      const room = this.rooms.get(info.name);
      if (room) {
        room.info = info;
      } else {
        this.rooms.set(info.name, new Room(info));
        // A room that appears later is new: everything in it is unread.
        if (this.discovering && !(info.name in this.reads)) this.reads[info.name] = 0;
        this.queueJoin(info.name);
      }
    }
    this.renderRoomList();
    if (this.current) this.renderHeader();
  }

  forget(name) {
    const room = this.rooms.get(name);
    this.rooms.delete(name);
    if (room?.joined) this.live.send({ type: "leave", room: name });
    if (this.current === name) {
      this.toast(room?.notice || `#${name} is no longer available.`);
      this.showNoRoom();
    }
  }

  schedulePoll() {
    clearTimeout(this.pollTimer);
    if (!this.active) return;
    const delay = document.visibilityState === "visible" ? POLL_VISIBLE_MS : POLL_HIDDEN_MS;
    this.pollTimer = setTimeout(() => this.poll(), delay);
  }

  async poll() {
    if (!this.active) return;
    try {
      await this.loadRooms();
    } catch {
      // Offline: the next poll tries again.
    }
    this.schedulePoll();
  }

  unread(room) {
    return Math.max(0, room.latest - (this.reads[room.name] ?? 0));
  }

  renderRoomList() {
    const list = $("#rooms");
    const rooms = [...this.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
    keepingFocus(() => list.replaceChildren(...rooms.map((room) => this.roomItem(room))));
    $("#rooms-empty").hidden = rooms.length > 0;
    this.updateTitle();
  }

  roomItem(room) {
    const unread = room.name === this.current && this.seeing() ? 0 : this.unread(room);
    const label = unread ? `${room.name}, ${unread} unread` : room.name;
    return h(
      "li",
      {},
      h(
        "button.room-link",
        {
          type: "button",
          dataset: { room: room.name },
          "aria-current": room.name === this.current ? "true" : "false",
          "aria-label": label,
          onclick: () => this.open(room.name),
        },
        room.info.private
          ? h("span.sigil.lock", { role: "img", "aria-label": "private" })
          : h("span.sigil", { "aria-hidden": "true" }, "#"),
        h("span.room-name", {}, room.name),
        unread ? h("span.badge", { "aria-hidden": "true" }, unread > 99 ? "99+" : String(unread)) : null,
      ),
    );
  }

  updateRoomItem(name) {
    const room = this.rooms.get(name);
    const old = $(`#rooms button[data-room="${CSS.escape(name)}"]`)?.parentElement;
    if (room && old) keepingFocus(() => old.replaceWith(this.roomItem(room)));
    this.updateTitle();
  }

  updateTitle() {
    let total = 0;
    for (const room of this.rooms.values()) if (room.name !== this.current || !this.seeing()) total += this.unread(room);
    document.title = total ? `(${total}) townsquare` : "townsquare";
  }

  // -- joining -----------------------------------------------------------------------

  // Joins are paced (the server limits frames per second), the open room first.
  queueJoin(name, { first = false } = {}) {
    const room = this.rooms.get(name);
    if (!this.live.ready || !room || room.joined || room.joining || this.mustVerify) return;
    const live = [...this.rooms.values()].filter((r) => r.joined).length + this.joinQueue.length;
    if (!first && live >= LIVE_ROOMS) return;
    this.joinQueue = this.joinQueue.filter((queued) => queued !== name);
    if (first) this.joinQueue.unshift(name);
    else this.joinQueue.push(name);
    if (!this.joinTimer) this.pumpJoins();
  }

  pumpJoins() {
    this.joinTimer = null;
    for (const name of this.joinQueue.splice(0, 5)) this.join(name);
    if (this.joinQueue.length) this.joinTimer = setTimeout(() => this.pumpJoins(), 400);
  }

  join(name, since) {
    const room = this.rooms.get(name);
    if (!room) return;
    const from = since ?? room.seq;
    room.joining = true;
    this.live.send(from === null || from === undefined ? { type: "join", room: name } : { type: "join", room: name, since: from });
  }

  connected() {
    // (Re)connected: join the open room, then the rest, each from where it stopped.
    this.joinQueue = [];
    if (this.current) this.queueJoin(this.current, { first: true });
    for (const name of this.rooms.keys()) if (name !== this.current) this.queueJoin(name);
  }

  disconnected() {
    clearTimeout(this.joinTimer);
    this.joinTimer = null;
    this.joinQueue = [];
    for (const room of this.rooms.values()) {
      room.joined = false;
      room.joining = false;
      // Who is online is unknown while we are not connected: show nothing stale.
      room.online.clear();
      room.onlineCount = 0;
      for (const typing of room.typing.values()) clearTimeout(typing.timer);
      room.typing.clear();
    }
    if (this.current) {
      this.renderOnline();
      this.renderTyping();
      this.renderOutbox();
    }
  }

  // -- frames ------------------------------------------------------------------------

  handle(frame) {
    if (!this.active) return;
    switch (frame.type) {
      case "welcome":
        this.connected();
        break;
      case "disconnected":
        this.disconnected();
        break;
      case "joined":
        this.onJoined(frame).catch((error) => this.toast(errorMessage(error)));
        break;
      case "left":
        this.onLeft(frame);
        break;
      case "message":
        this.onMessage(frame);
        break;
      case "presence":
        this.onPresence(frame);
        break;
      case "typing":
        this.onTyping(frame);
        break;
      case "error":
        this.onError(frame);
        break;
      default:
        break;
    }
  }

  async onJoined(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    room.joined = true;
    room.joining = false;
    room.notice = "";
    room.online = new Map((frame.online || []).map((user) => [user.id, user.name]));
    room.onlineCount = frame.online_count ?? room.online.size;
    if (frame.room === this.current) {
      this.renderOnline();
      this.renderNotice();
    }
    const known = room.seq;
    if (known === null) {
      // First join: live messages follow `frame.seq`. History loaded before the join
      // (while offline) may end below it: fill that hole from the REST API.
      const highest = room.messages.size ? Math.max(...room.messages.keys()) : null;
      room.seq = highest ?? frame.seq;
      if (highest !== null && highest < frame.seq) await this.fillGap(room, frame.seq);
      room.seq = Math.max(room.seq, frame.seq);
    } else if (frame.recovered === false) {
      // More was missed than the server replays: page the gap, then join again from
      // the new position.
      await this.fillGap(room, frame.seq);
      this.join(room.name, room.seq);
    }
    this.sendOutbox(room.name);
    if (frame.room === this.current && !room.historyLoaded) await this.loadLatest(room);
    this.updateRoomItem(room.name);
  }

  async fillGap(room, upto) {
    if (upto - (room.seq ?? 0) > GAP_MAX) {
      // Too far behind to page through: start over at the end (older messages stay
      // one scroll away).
      room.messages.clear();
      room.historyLoaded = false;
      room.reachedStart = false;
      room.seq = upto;
      if (room.name === this.current) await this.loadLatest(room);
      return;
    }
    while (room.seq < upto) {
      const page = await api("GET", `${roomPath(room.name)}/messages?after_seq=${room.seq}&limit=${GAP_PAGE}`);
      for (const message of page) this.onMessage({ ...message, room: room.name });
      if (page.length < GAP_PAGE) break;
    }
  }

  onLeft(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    room.joined = false;
    room.joining = false;
    room.online.clear();
    room.onlineCount = 0;
    room.notice = LEFT_REASONS[frame.reason] || "You left this room.";
    if (frame.room === this.current) {
      this.renderNotice();
      this.renderOnline();
    }
    // The room may be gone from the list (deleted, or private and no longer ours).
    this.loadRooms().catch(() => {});
  }

  onMessage(message) {
    const room = this.rooms.get(message.room);
    if (!room || room.messages.has(message.seq)) return;
    room.messages.set(message.seq, message);
    if (room.seq !== null && message.seq === room.seq + 1) {
      room.seq = message.seq;
      while (room.messages.has(room.seq + 1)) room.seq += 1;
    }
    if (message.client_id && this.outbox.has(message.client_id)) {
      clearTimeout(this.outbox.get(message.client_id).timer);
      this.outbox.delete(message.client_id);
    }
    const typing = message.author && room.typing.get(message.author.id);
    if (typing) {
      // Their message is here: they stopped typing it.
      clearTimeout(typing.timer);
      room.typing.delete(message.author.id);
      if (room.name === this.current) this.renderTyping();
    }
    const mine = message.author && this.me && message.author.id === this.me.id;
    if (mine) this.markRead(room, message.seq);
    if (room.name === this.current) {
      this.renderMessage(room, message);
      if (this.seeing() && this.atBottom()) this.markRead(room, message.seq);
    } else if (room.messages.size > KEEP_IN_BACKGROUND * 1.5) {
      const drop = room.sorted().slice(0, room.messages.size - KEEP_IN_BACKGROUND);
      for (const old of drop) room.messages.delete(old.seq);
      room.reachedStart = false;
    }
    this.updateRoomItem(room.name);
  }

  onPresence(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || !room.joined) return;
    const had = room.online.has(frame.user.id);
    if (frame.state === "online" && !had) {
      room.online.set(frame.user.id, frame.user.name);
      room.onlineCount += 1;
    } else if (frame.state === "offline" && had) {
      room.online.delete(frame.user.id);
      room.onlineCount = Math.max(room.online.size, room.onlineCount - 1);
    }
    if (frame.room === this.current) this.renderOnline();
    document.dispatchEvent(new CustomEvent("presence-changed", { detail: frame.room }));
  }

  onTyping(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || !this.me || frame.user.id === this.me.id) return;
    clearTimeout(room.typing.get(frame.user.id)?.timer);
    const timer = setTimeout(() => {
      room.typing.delete(frame.user.id);
      if (frame.room === this.current) this.renderTyping();
    }, TYPING_SHOW_MS);
    room.typing.set(frame.user.id, { name: frame.user.name, timer });
    if (frame.room === this.current) this.renderTyping();
  }

  onError(frame) {
    if (frame.code === "email_not_verified") {
      this.refusedUnverified(frame.detail);
      return;
    }
    const item = frame.ref && this.outbox.get(frame.ref);
    if (item) {
      this.fail(frame.ref, frame.detail);
      return;
    }
    if (frame.code === "token_expired") return; // the socket renews the token
    if (frame.code === "room_not_found") {
      // A join refused (the room is gone, or no longer ours): the list tells which.
      for (const room of this.rooms.values()) if (!room.joined) room.joining = false;
      this.loadRooms().catch(() => {});
      return;
    }
    this.toast(frame.detail);
  }

  // A join (or a post) was refused until the address is verified: say so in the room
  // instead of waiting for a connection that will not let the messages through.
  refusedUnverified(detail) {
    this.mustVerify = true;
    this.joinQueue = [];
    for (const room of this.rooms.values()) room.joining = false;
    for (const [clientId, item] of this.outbox) if (item.status === "pending") this.fail(clientId, detail);
    this.renderNotice();
  }

  // The address is verified now: join every room.
  verified() {
    if (!this.mustVerify) return;
    this.mustVerify = false;
    this.renderNotice();
    if (this.live.ready) this.connected();
  }

  // -- the open room -----------------------------------------------------------------

  open(name, { focus = true } = {}) {
    const room = this.rooms.get(name);
    if (!room) return;
    this.current = name;
    history.replaceState(null, "", `${location.pathname}#${encodeURIComponent(name)}`);
    document.body.dataset.pane = "room";
    $("#room").hidden = false;
    $("#no-room").hidden = true;
    this.renderHeader();
    this.renderNotice();
    this.renderAll({ toBottom: true });
    this.renderOnline();
    this.renderTyping();
    this.renderRoomList();
    if (!room.joined) this.queueJoin(name, { first: true });
    if (!room.historyLoaded) this.loadLatest(room).catch((error) => this.toast(errorMessage(error)));
    else this.markRead(room, room.latest);
    if (focus) this.focusComposer();
  }

  focusComposer() {
    // Not on phones, where focus would pop the keyboard over the messages.
    if (matchMedia("(min-width: 48rem)").matches) $("#composer-input").focus();
  }

  showNoRoom() {
    this.current = null;
    document.body.dataset.pane = "rooms";
    $("#room").hidden = true;
    $("#no-room").hidden = false;
    $("#messages").replaceChildren();
    this.renderRoomList();
  }

  back() {
    this.showNoRoom();
    history.replaceState(null, "", location.pathname);
    $("#rooms button")?.focus();
  }

  canManage(room) {
    return Boolean(this.me && (this.me.is_admin || room.info.owner_id === this.me.id));
  }

  renderHeader() {
    const room = this.rooms.get(this.current);
    if (!room) return;
    $("#room-title").replaceChildren(
      room.info.private
        ? h("span.sigil.lock", { role: "img", "aria-label": "private room" })
        : h("span.sigil", { "aria-hidden": "true" }, "#"),
      room.name,
    );
    $("#room-topic").textContent = room.info.topic || "";
    $("#room-topic").hidden = !room.info.topic;
    $("#room-settings").hidden = !this.canManage(room);
  }

  renderNotice() {
    const room = this.rooms.get(this.current);
    const notice = $("#room-notice");
    const text = room?.notice || (room && !room.joined && this.mustVerify ? MUST_VERIFY : "");
    notice.textContent = text;
    notice.hidden = !text;
    // Out of the room (removed, deleted, access taken, not verified): nothing can be
    // sent to it.
    for (const control of $("#composer").elements) control.disabled = Boolean(text);
  }

  renderOnline() {
    const room = this.rooms.get(this.current);
    const button = $("#online");
    if (!room) return;
    if (!room.joined) {
      button.textContent = "Members";
      button.title = "Who is online shows once connected";
      button.dataset.state = "unknown";
      return;
    }
    const names = [...room.online.values()];
    button.textContent = `${room.onlineCount} online`;
    button.title = names.join(", ");
    button.dataset.state = "known";
  }

  renderTyping() {
    const room = this.rooms.get(this.current);
    const names = room ? [...room.typing.values()].map((t) => t.name) : [];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    $("#typing").textContent = text;
  }

  seeing() {
    return document.visibilityState === "visible" && document.body.dataset.view === "chat";
  }

  atBottom() {
    const scroller = $("#scroller");
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
  }

  markRead(room, seq) {
    if ((this.reads[room.name] ?? 0) >= seq) return;
    this.reads[room.name] = seq;
    this.saveReads();
    this.updateRoomItem(room.name);
  }

  // Every message of the open room, with day separators; the outbox at the end.
  renderAll({ toBottom = false, keepOffset = false } = {}) {
    const room = this.rooms.get(this.current);
    const scroller = $("#scroller");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const list = $("#messages");
    const items = [];
    let previous = null;
    for (const message of room ? room.sorted() : []) {
      items.push(...this.messageItems(message, previous));
      previous = message;
    }
    list.replaceChildren(...items);
    this.renderedUpTo = previous ? previous.seq : 0;
    this.renderOutbox();
    this.renderHistoryState();
    if (toBottom) scroller.scrollTop = scroller.scrollHeight;
    else if (keepOffset) scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }

  messageItems(message, previous) {
    const date = new Date(message.sent_at);
    const items = [];
    const newDay = !previous || dayKey(new Date(previous.sent_at)) !== dayKey(date);
    if (newDay) {
      items.push(h("li.day", { role: "separator" }, h("span", {}, dayLabel(date))));
    }
    const sameAuthor =
      previous &&
      !newDay &&
      previous.author?.id === message.author?.id &&
      date - new Date(previous.sent_at) < GROUP_MS;
    const time = h("time", { dateTime: message.sent_at, title: fullTime(date) }, clockTime(date));
    const item = h(
      `li.message${sameAuthor ? ".continued" : ""}`,
      { dataset: { seq: message.seq } },
      sameAuthor
        ? h("span.meta", {}, time)
        : h("span.meta", {}, h("span.author", {}, message.author ? message.author.name : "Deleted user"), time),
      h("p.body", {}, message.body),
    );
    items.push(item);
    return items;
  }

  renderMessage(room, message) {
    const list = $("#messages");
    if (message.seq <= this.renderedUpTo || !room.historyLoaded) {
      // Out of order (a gap filled, an older page): draw the room again in place.
      if (room.historyLoaded) this.renderAll({ keepOffset: true });
      return;
    }
    const stick = this.atBottom();
    const previous = room.messages.get(this.renderedUpTo) || null;
    const pendingFirst = list.querySelector("li.pending");
    for (const item of this.messageItems(message, previous)) list.insertBefore(item, pendingFirst);
    this.renderedUpTo = message.seq;
    this.renderOutbox();
    const scroller = $("#scroller");
    if (stick) scroller.scrollTop = scroller.scrollHeight;
    else $("#jump").hidden = false;
  }

  renderHistoryState() {
    const room = this.rooms.get(this.current);
    let text = "";
    if (room?.loadingOlder) text = "Loading earlier messages…";
    else if (room?.reachedStart) text = `This is the beginning of #${room.name}.`;
    $("#history-state").textContent = text;
  }

  async loadLatest(room) {
    const before = room.oldest ?? (room.seq ?? room.info.last_seq) + 1;
    if (before <= 1) {
      room.historyLoaded = true;
      room.reachedStart = true;
    } else {
      const page = await api("GET", `${roomPath(room.name)}/messages?before_seq=${before}&limit=${LATEST}`);
      for (const message of page) room.messages.set(message.seq, { ...message, room: room.name });
      room.historyLoaded = true;
      room.reachedStart = page.length < LATEST || page[0]?.seq === 1;
    }
    if (room.seq === null && room.messages.size) room.seq = Math.max(...room.messages.keys());
    if (room.name === this.current) {
      this.renderAll({ toBottom: true });
      if (this.seeing()) this.markRead(room, room.latest);
      this.maybeLoadOlder();
    }
  }

  async loadOlder() {
    const room = this.rooms.get(this.current);
    if (!room || !room.historyLoaded || room.reachedStart || room.loadingOlder) return;
    const before = room.oldest;
    if (before === null || before <= 1) {
      room.reachedStart = true;
      this.renderHistoryState();
      return;
    }
    room.loadingOlder = true;
    this.renderHistoryState();
    try {
      const page = await api("GET", `${roomPath(room.name)}/messages?before_seq=${before}&limit=${PAGE}`);
      for (const message of page) room.messages.set(message.seq, { ...message, room: room.name });
      room.reachedStart = page.length < PAGE || page[0]?.seq === 1;
    } finally {
      room.loadingOlder = false;
    }
    if (room.name === this.current) {
      this.renderAll({ keepOffset: true });
      this.maybeLoadOlder();
    }
  }

  // The top of the history is in view (a short page, a tall screen): load more.
  maybeLoadOlder() {
    const scroller = $("#scroller");
    if (scroller.scrollTop < 200 && scroller.scrollHeight > 0) {
      requestAnimationFrame(() => {
        if (scroller.scrollTop < 200) this.loadOlder().catch((error) => this.toast(errorMessage(error)));
      });
    }
  }

  // -- sending -----------------------------------------------------------------------

  submit(body) {
    const room = this.rooms.get(this.current);
    if (!room) return;
    const clientId = crypto.randomUUID();
    this.outbox.set(clientId, { room: room.name, body, status: "pending", error: "", timer: null });
    this.renderOutbox();
    $("#scroller").scrollTop = $("#scroller").scrollHeight;
    this.trySend(clientId);
  }

  trySend(clientId) {
    const item = this.outbox.get(clientId);
    const room = item && this.rooms.get(item.room);
    if (!item || !room) return;
    item.status = "pending";
    clearTimeout(item.timer);
    if (room.joined && this.live.send({ type: "send", room: item.room, body: item.body, client_id: clientId, ref: clientId })) {
      item.timer = setTimeout(() => this.fail(clientId, "Not confirmed by the server"), CONFIRM_MS);
    }
    if (item.room === this.current) this.renderOutbox();
  }

  sendOutbox(name) {
    for (const [clientId, item] of this.outbox) {
      if (item.room === name && item.status === "pending") this.trySend(clientId);
    }
  }

  fail(clientId, reason) {
    const item = this.outbox.get(clientId);
    if (!item) return;
    clearTimeout(item.timer);
    item.status = "failed";
    item.error = reason;
    if (item.room === this.current) this.renderOutbox();
  }

  renderOutbox() {
    const list = $("#messages");
    for (const old of list.querySelectorAll("li.pending")) old.remove();
    const room = this.rooms.get(this.current);
    for (const [clientId, item] of this.outbox) {
      if (item.room !== this.current) continue;
      const waiting = !room?.joined;
      const state =
        item.status === "failed"
          ? h(
              "span.state.failed",
              {},
              `Failed: ${item.error}. `,
              h("button.link", { type: "button", onclick: () => this.trySend(clientId) }, "Retry"),
              " ",
              h("button.link", { type: "button", onclick: () => this.discard(clientId) }, "Discard"),
            )
          : h("span.state", {}, waiting ? "Waiting for connection…" : "Sending…");
      list.append(
        h(
          "li.message.pending",
          { dataset: { clientId, status: item.status } },
          h("span.meta", {}, h("span.author", {}, this.me?.name || ""), state),
          h("p.body", {}, item.body),
        ),
      );
    }
  }

  discard(clientId) {
    clearTimeout(this.outbox.get(clientId)?.timer);
    this.outbox.delete(clientId);
    this.renderOutbox();
  }

  typed() {
    const now = Date.now();
    if (this.current && now - this.lastTypingSent > TYPING_SEND_MS && this.rooms.get(this.current)?.joined) {
      this.lastTypingSent = now;
      this.live.send({ type: "typing", room: this.current });
    }
  }

  // -- wiring ------------------------------------------------------------------------

  bind() {
    const input = $("#composer-input");
    $("#composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const body = input.value.trim();
      if (!body) return;
      input.value = "";
      this.submit(body);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("#composer").requestSubmit();
      }
    });
    input.addEventListener("input", () => this.typed());
    $("#back").addEventListener("click", () => this.back());
    const scroller = $("#scroller");
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop < 200) this.loadOlder().catch((error) => this.toast(errorMessage(error)));
      if (this.atBottom()) {
        $("#jump").hidden = true;
        const room = this.rooms.get(this.current);
        if (room && this.seeing()) this.markRead(room, room.latest);
      }
    });
    $("#jump").addEventListener("click", () => {
      scroller.scrollTop = scroller.scrollHeight;
      $("#jump").hidden = true;
    });
    const wake = () => {
      if (!this.active || document.visibilityState !== "visible") return;
      const room = this.rooms.get(this.current);
      if (room && this.atBottom()) this.markRead(room, room.latest);
      if (Date.now() - this.lastPoll > 2000) this.poll();
    };
    document.addEventListener("visibilitychange", wake);
    window.addEventListener("focus", wake);
    // Another tab read a room: its badge clears here too.
    window.addEventListener("storage", (event) => {
      if (this.me && event.key === this.readsKey() && event.newValue) {
        this.reads = JSON.parse(event.newValue);
        this.renderRoomList();
      }
    });
    // Alt+Up / Alt+Down: previous / next room.
    document.addEventListener("keydown", (event) => {
      if (!this.active || !event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
      const names = [...this.rooms.keys()].sort((a, b) => a.localeCompare(b));
      if (!names.length) return;
      const at = names.indexOf(this.current);
      const next = event.key === "ArrowUp" ? Math.max(0, at - 1) : Math.min(names.length - 1, at + 1);
      event.preventDefault();
      this.open(names[at === -1 ? 0 : next]);
    });
  }

  async createRoom({ name, topic, isPrivate }) {
    await api("POST", "/rooms", { json: { name, topic: topic || null, private: isPrivate } });
    await this.loadRooms();
    this.markRead(this.rooms.get(name), 0);
    this.open(name);
  }

  async updateRoom(name, changes) {
    const info = await api("PATCH", roomPath(name), { json: changes });
    const room = this.rooms.get(name);
    if (room) room.info = info;
    this.renderRoomList();
    this.renderHeader();
  }

  async deleteRoom(name) {
    await api("DELETE", roomPath(name));
    this.rooms.get(name).notice = `#${name} was deleted.`;
    await this.loadRooms();
  }

  isOnline(name, userId) {
    return Boolean(this.rooms.get(name)?.online.has(userId));
  }
}

export { ApiError };
