// The admin page: live figures from GET /admin/stats (every 2 s while on screen) and
// user management (disable / enable, grant / take admin) through PATCH /users/{id}.
import { api } from "./api.js";
import { $, errorMessage, h } from "./dom.js";
import { confirmAction } from "./rooms.js";

const REFRESH_MS = 2000;
const USERS_PAGE = 100;

function duration(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

export class Admin {
  constructor({ toast }) {
    this.toast = toast;
    this.me = null;
    this.timer = null;
    this.users = [];
    this.more = false;
    this.active = false;
    $("#user-filter").addEventListener("submit", (event) => event.preventDefault());
    $("#user-filter").elements.q.addEventListener("input", () => this.renderUsers());
    $("#more-users").addEventListener("click", () => this.loadUsers().catch((e) => this.toast(errorMessage(e))));
    document.addEventListener("visibilitychange", () => {
      if (this.active && document.visibilityState === "visible") this.tick();
    });
  }

  async show(me) {
    this.me = me;
    this.active = true;
    $("#admin-denied").hidden = me.is_admin;
    $("#admin-body").hidden = !me.is_admin;
    if (!me.is_admin) return;
    this.users = [];
    this.more = false;
    $("#users tbody").replaceChildren();
    this.tick();
    await this.loadUsers();
  }

  hide() {
    this.active = false;
    clearTimeout(this.timer);
  }

  reset() {
    this.hide();
    this.me = null;
    this.users = [];
    $("#figures").replaceChildren();
    $("#instances tbody").replaceChildren();
    $("#users tbody").replaceChildren();
    $("#admin-updated").textContent = "";
    $("#user-filter").reset();
  }

  async tick() {
    clearTimeout(this.timer);
    if (!this.active) return;
    try {
      this.renderStats(await api("GET", "/admin/stats"));
    } catch (error) {
      $("#admin-updated").textContent = `Figures unavailable: ${errorMessage(error)}`;
    }
    if (this.active && document.visibilityState === "visible") {
      this.timer = setTimeout(() => this.tick(), REFRESH_MS);
    }
  }

  renderStats(stats) {
    const totals = stats.totals;
    const brokerOk = stats.broker.healthy;
    const figure = (label, value, key, extra = {}, note = null) =>
      h(
        "div.figure",
        { dataset: { figure: key } },
        h("dt", {}, label),
        h("dd", { dataset: extra }, value),
        note ? h("p.note", {}, note) : null,
      );
    $("#figures").replaceChildren(
      figure("Instances", stats.instances_known ? String(stats.instances.length) : "unknown", "instances"),
      figure("Open sockets", String(totals.sockets), "sockets"),
      figure("Rooms", String(totals.rooms), "rooms"),
      figure("Messages / s", totals.messages_per_second.toFixed(1), "rate"),
      figure("Broker", brokerOk ? "Healthy" : "Down", "broker", { state: brokerOk ? "ok" : "down" }, stats.broker.backend === "redis" ? "Redis" : "In memory (one process)"),
      figure("Users", String(totals.users), "users"),
      figure("Messages stored", String(totals.messages), "messages"),
    );
    const now = Date.now() / 1000;
    $("#instances tbody").replaceChildren(
      ...stats.instances.map((instance) =>
        h(
          "tr",
          {},
          h("td", {}, h("code", {}, instance.id.slice(0, 8))),
          h("td", {}, `${instance.host} / ${instance.pid}`),
          h("td", {}, String(instance.sockets)),
          h("td", {}, String(instance.rooms)),
          h("td", {}, instance.messages_per_second.toFixed(1)),
          h("td", { dataset: { state: instance.broker_healthy ? "ok" : "down" } }, instance.broker_healthy ? "Healthy" : "Down"),
          h("td", {}, duration(now - instance.started_at)),
        ),
      ),
    );
    $("#admin-updated").textContent = `Updated ${new Date(stats.generated_at).toLocaleTimeString()}`;
  }

  async loadUsers() {
    const page = await api("GET", `/users?skip=${this.users.length}&limit=${USERS_PAGE}`);
    this.users.push(...page);
    this.more = page.length === USERS_PAGE;
    $("#more-users").hidden = !this.more;
    this.renderUsers();
  }

  renderUsers() {
    const query = $("#user-filter").elements.q.value.trim().toLowerCase();
    const shown = this.users.filter(
      (user) => !query || user.name.toLowerCase().includes(query) || (user.email || "").includes(query),
    );
    $("#users tbody").replaceChildren(...shown.map((user) => this.userRow(user)));
  }

  userRow(user) {
    const self = this.me && user.id === this.me.id;
    const actions = self
      ? h("td", {}, h("span.muted", {}, "you"))
      : h(
          "td",
          {},
          h(
            "div.actions",
            {},
            h(
            "button.small",
            { type: "button", onclick: () => this.change(user, { is_admin: !user.is_admin }) },
            user.is_admin ? "Remove admin" : "Make admin",
          ),
          h(
            `button.small${user.is_active ? ".danger" : ""}`,
            { type: "button", onclick: () => this.toggleActive(user) },
            user.is_active ? "Disable" : "Enable",
          ),
          ),
        );
    return h(
      "tr",
      { dataset: { userId: user.id } },
      h("td", {}, user.name),
      h("td.email", {}, user.email || ""),
      h("td", {}, user.is_admin ? "Admin" : "Member"),
      h("td", { dataset: { state: user.is_active ? "ok" : "down" } }, user.is_active ? "Active" : "Disabled"),
      actions,
    );
  }

  async toggleActive(user) {
    if (user.is_active) {
      const ok = await confirmAction({
        title: `Disable ${user.name}?`,
        text: "They are signed out everywhere at once and cannot sign in until enabled again.",
        action: "Disable",
      });
      if (!ok) return;
    }
    await this.change(user, { is_active: !user.is_active });
  }

  async change(user, changes) {
    try {
      const updated = await api("PATCH", `/users/${user.id}`, { json: changes });
      this.users = this.users.map((existing) => (existing.id === updated.id ? updated : existing));
      this.renderUsers();
    } catch (error) {
      this.toast(errorMessage(error));
    }
  }
}
