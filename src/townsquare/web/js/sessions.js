// The sessions page (/sessions, from the account menu): every login of the account
// (GET /auth/sessions) with its browser, address and times, "this device" first. Any
// one can be ended (DELETE /auth/sessions/{id}): the server ends its tokens and its
// sockets at once; ending this device's logs out here.
import { api } from "./api.js";
import { $, errorMessage, fullTime, h } from "./dom.js";
import { confirmAction } from "./rooms.js";

const BROWSERS = [
  [/Edg(e|A|iOS)?\//, "Edge"],
  [/OPR\/|Opera/, "Opera"],
  [/SamsungBrowser\//, "Samsung Internet"],
  [/Firefox\/|FxiOS\//, "Firefox"],
  [/Chrome\/|CriOS\/|Chromium\//, "Chrome"],
  [/Safari\//, "Safari"],
];
// In this order: an iPhone says "like Mac OS X", Android says "Linux".
const SYSTEMS = [
  [/Windows/, "Windows"],
  [/iPhone|iPad|iPod/, "iOS"],
  [/Android/, "Android"],
  [/CrOS/, "ChromeOS"],
  [/Macintosh|Mac OS X/, "macOS"],
  [/Linux/, "Linux"],
];

// "Firefox on Windows"; for a client that is no browser, its first product token.
export function deviceName(agent) {
  if (!agent) return "Unknown browser";
  const browser = BROWSERS.find(([pattern]) => pattern.test(agent))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(agent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  return browser || system || agent.split(/[\s(]/)[0].slice(0, 60) || "Unknown browser";
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

function ago(date, now = Date.now()) {
  const seconds = (now - date.getTime()) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 45 * 60) return relative.format(-Math.round(seconds / 60), "minute");
  if (seconds < 22 * 3600) return relative.format(-Math.round(seconds / 3600), "hour");
  if (seconds < 7 * 86400) return relative.format(-Math.round(seconds / 86400), "day");
  return dateFormat.format(date);
}

function when(iso) {
  const date = new Date(iso);
  return h("time", { dateTime: iso, title: fullTime(date) }, ago(date));
}

export class Sessions {
  // ended(): this device's session was ended from this page.
  constructor({ ended }) {
    this.ended = ended;
    this.active = false;
    this.list = [];
    $("#end-others").addEventListener("click", () => this.endOthers());
    const wake = () => {
      if (this.active && document.visibilityState === "visible") this.load();
    };
    document.addEventListener("visibilitychange", wake);
    window.addEventListener("focus", wake);
  }

  async show() {
    this.active = true;
    await this.load();
  }

  hide() {
    this.active = false;
  }

  reset() {
    this.hide();
    this.list = [];
    $("#session-list").replaceChildren();
    $("#sessions-state").textContent = "";
    $("#end-others").hidden = true;
  }

  async load() {
    try {
      const list = await api("GET", "/auth/sessions");
      if (!this.active) return;
      // This device first, then the most recently used (the API's order).
      this.list = [...list.filter((s) => s.current), ...list.filter((s) => !s.current)];
      this.render();
    } catch (error) {
      if (this.active) $("#sessions-state").textContent = `Sessions unavailable: ${errorMessage(error)}`;
    }
  }

  render() {
    const others = this.list.filter((s) => !s.current).length;
    $("#end-others").hidden = others === 0;
    $("#sessions-state").textContent =
      others === 0 ? "No other session: this is the only browser logged in to your account." : "";
    const focused = document.activeElement?.closest?.(".session")?.dataset.sessionId;
    $("#session-list").replaceChildren(...this.list.map((item) => this.item(item)));
    if (focused) $(`.session[data-session-id="${CSS.escape(focused)}"] button`)?.focus();
  }

  item(item) {
    const name = deviceName(item.user_agent);
    const headingId = `session-${item.id}`;
    return h(
      "li.session",
      { dataset: { sessionId: item.id, current: String(item.current) } },
      h(
        "div.session-head",
        {},
        h("h3", { id: headingId }, name),
        item.current ? h("span.tag", {}, "This device") : null,
      ),
      h(
        "dl.session-facts",
        {},
        h("div", {}, h("dt", {}, "Logged in"), h("dd", {}, when(item.created_at))),
        h("div", {}, h("dt", {}, "Last active"), h("dd", {}, when(item.last_used_at))),
        h("div", {}, h("dt", {}, "IP address"), h("dd", {}, item.client_ip || "unknown")),
      ),
      item.user_agent ? h("p.agent", {}, item.user_agent) : null,
      h(
        "button.danger.small",
        { type: "button", "aria-describedby": headingId, onclick: (event) => this.end(item, event.currentTarget) },
        item.current ? "Log out" : "End session",
      ),
    );
  }

  async end(item, button) {
    button.disabled = true;
    try {
      await api("DELETE", `/auth/sessions/${encodeURIComponent(item.id)}`);
    } catch (error) {
      // 404: it had ended already (expired, or ended elsewhere): the list says so.
      if (error.status !== 404) {
        button.disabled = false;
        $("#sessions-state").textContent = `The session was not ended: ${errorMessage(error)}`;
        return;
      }
    }
    if (item.current) {
      this.ended();
      return;
    }
    await this.load();
    $("#sessions-state").textContent = `Ended the session of ${deviceName(item.user_agent)}.`;
    ($("#end-others").hidden ? $("#sessions h2") : $("#end-others")).focus();
  }

  async endOthers() {
    const others = this.list.filter((s) => !s.current);
    const ok = await confirmAction({
      title: "End all other sessions?",
      text: `${others.length === 1 ? "The other browser is" : `The ${others.length} other browsers are`} logged out at once. This one stays logged in.`,
      action: "End them",
    });
    if (!ok) return;
    const failed = [];
    for (const item of others) {
      try {
        await api("DELETE", `/auth/sessions/${encodeURIComponent(item.id)}`);
      } catch (error) {
        if (error.status !== 404) failed.push(errorMessage(error));
      }
    }
    await this.load();
    $("#sessions-state").textContent = failed.length
      ? `${failed.length} session(s) could not be ended: ${failed[0]}`
      : "Every other session has ended.";
    $("#sessions h2").focus();
  }
}
