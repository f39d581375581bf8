// The room dialogs: create a room, its members (who is online, add and remove people),
// and its settings (topic, private, delete). Only the owner and admins may manage.
import { api, room as roomPath } from "./api.js";
import { $, errorMessage, h } from "./dom.js";

const USERS_MAX = 500; // people loaded for the "add people" search (GET /users pages)
const CANDIDATES_SHOWN = 8;

function closeButtons(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => dialog.close());
  }
}

export function confirmAction({ title, text, action }) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export class RoomDialogs {
  constructor(chat) {
    this.chat = chat;
    this.users = null;
    this.members = [];
    this.bindCreate();
    this.bindMembers();
    this.bindSettings();
  }

  reset() {
    this.users = null;
    this.members = [];
    for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
    // Nothing of the previous session stays in the page, shown or not.
    $("#members-title").textContent = "Members";
    $("#settings-title").textContent = "Room settings";
    $("#confirm-title").textContent = "";
    $("#confirm-text").textContent = "";
    $("#members").replaceChildren();
    $("#candidates").replaceChildren();
    for (const form of document.querySelectorAll("dialog form")) form.reset();
    for (const error of document.querySelectorAll("dialog .error")) error.textContent = "";
  }

  // -- create ------------------------------------------------------------------------

  bindCreate() {
    const dialog = $("#room-dialog");
    const form = $("#room-form");
    closeButtons(dialog);
    $("#new-room").addEventListener("click", () => {
      form.reset();
      form.querySelector(".error").textContent = "";
      dialog.showModal();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      try {
        await this.chat.createRoom({
          name: String(data.get("name")).trim(),
          topic: String(data.get("topic")).trim(),
          isPrivate: data.get("private") === "on",
        });
        dialog.close(); // (closing gives focus back to "New room"...)
        this.chat.focusComposer(); // (...but the person came to write)
      } catch (error) {
        form.querySelector(".error").textContent = errorMessage(error);
      }
    });
  }

  // -- members -----------------------------------------------------------------------

  bindMembers() {
    const dialog = $("#members-dialog");
    closeButtons(dialog);
    $("#online").addEventListener("click", () => this.openMembers());
    $("#add-member").addEventListener("submit", (event) => event.preventDefault());
    $("#add-member").elements.q.addEventListener("input", () => this.renderCandidates());
    document.addEventListener("presence-changed", (event) => {
      if (dialog.open && event.detail === this.chat.current) this.renderMembers();
    });
  }

  async openMembers() {
    const name = this.chat.current;
    const room = this.chat.rooms.get(name);
    if (!room) return;
    const dialog = $("#members-dialog");
    $("#members-title").textContent = `Members of ${room.name}`;
    dialog.querySelector(".error").textContent = "";
    const manage = this.chat.canManage(room);
    $("#add-member").hidden = !manage;
    $("#add-member").reset();
    $("#candidates").replaceChildren();
    $("#members").replaceChildren(h("li.muted", {}, "Loading…"));
    dialog.showModal();
    try {
      await this.loadMembers(name);
      if (manage) await this.loadUsers();
    } catch (error) {
      dialog.querySelector(".error").textContent = errorMessage(error);
    }
  }

  async loadMembers(name) {
    this.members = await api("GET", `${roomPath(name)}/members`);
    this.renderMembers();
  }

  async loadUsers() {
    if (this.users) return;
    const users = [];
    for (let skip = 0; skip < USERS_MAX; skip += 100) {
      const page = await api("GET", `/users?skip=${skip}&limit=100`);
      users.push(...page);
      if (page.length < 100) break;
    }
    this.users = users;
    this.renderCandidates();
  }

  renderMembers() {
    const name = this.chat.current;
    const room = this.chat.rooms.get(name);
    if (!room) return;
    const manage = this.chat.canManage(room);
    const me = this.chat.me;
    const items = this.members.map((member) => {
      const online = this.chat.isOnline(name, member.user.id);
      const self = member.user.id === me.id;
      const removable = member.role !== "owner" && (manage || self);
      return h(
        "li.member",
        { dataset: { userId: member.user.id } },
        h("span.presence-dot", { dataset: { online: String(online) }, "aria-hidden": "true" }),
        h("span.member-name", {}, member.user.name, self ? " (you)" : ""),
        h("span.muted", {}, member.role === "owner" ? "owner" : online ? "online" : "offline"),
        removable
          ? h(
              "button.quiet.small",
              { type: "button", onclick: () => this.remove(name, member.user) },
              self ? "Leave" : "Remove",
            )
          : null,
      );
    });
    $("#members").replaceChildren(...(items.length ? items : [h("li.muted", {}, "No members yet.")]));
    this.renderCandidates();
  }

  renderCandidates() {
    const list = $("#candidates");
    if (!this.users || $("#add-member").hidden) {
      list.replaceChildren();
      return;
    }
    const query = $("#add-member").elements.q.value.trim().toLowerCase();
    const members = new Set(this.members.map((member) => member.user.id));
    const matches = this.users
      .filter((user) => !members.has(user.id) && (!query || user.name.toLowerCase().includes(query)))
      .slice(0, CANDIDATES_SHOWN);
    list.replaceChildren(
      ...matches.map((user) =>
        h(
          "li",
          {},
          h("span", {}, user.name),
          h(
            "button.small",
            { type: "button", "aria-label": `Add ${user.name}`, onclick: () => this.add(user) },
            "Add",
          ),
        ),
      ),
    );
    if (query && !matches.length) list.append(h("li.muted", {}, "Nobody by that name."));
  }

  async add(user) {
    const name = this.chat.current;
    const dialog = $("#members-dialog");
    try {
      await api("PUT", `${roomPath(name)}/members/${user.id}`);
      await this.loadMembers(name);
      $("#add-member").elements.q.value = "";
      this.renderCandidates();
      $("#add-member").elements.q.focus();
    } catch (error) {
      dialog.querySelector(".error").textContent = errorMessage(error);
    }
  }

  async remove(name, user) {
    const self = user.id === this.chat.me.id;
    const ok = await confirmAction({
      title: self ? `Leave ${name}?` : `Remove ${user.name}?`,
      text: self ? "You will stop receiving its messages." : `${user.name} will no longer be a member of ${name}.`,
      action: self ? "Leave" : "Remove",
    });
    if (!ok) return;
    const dialog = $("#members-dialog");
    try {
      await api("DELETE", `${roomPath(name)}/members/${user.id}`);
      await this.loadMembers(name);
    } catch (error) {
      dialog.querySelector(".error").textContent = errorMessage(error);
    }
  }

  // -- settings ----------------------------------------------------------------------

  bindSettings() {
    const dialog = $("#settings-dialog");
    const form = $("#settings-form");
    closeButtons(dialog);
    $("#room-settings").addEventListener("click", () => {
      const room = this.chat.rooms.get(this.chat.current);
      if (!room) return;
      form.reset();
      form.elements.topic.value = room.info.topic || "";
      form.elements.private.checked = room.info.private;
      form.querySelector(".error").textContent = "";
      $("#settings-title").textContent = `Settings of ${room.name}`;
      dialog.showModal();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = this.chat.current;
      try {
        await this.chat.updateRoom(name, {
          topic: form.elements.topic.value.trim() || null,
          private: form.elements.private.checked,
        });
        dialog.close();
      } catch (error) {
        form.querySelector(".error").textContent = errorMessage(error);
      }
    });
    $("#delete-room").addEventListener("click", async () => {
      const name = this.chat.current;
      dialog.close();
      const ok = await confirmAction({
        title: `Delete ${name}?`,
        text: "The room and all its messages are deleted for everyone. This cannot be undone.",
        action: "Delete room",
      });
      if (!ok) return;
      try {
        await this.chat.deleteRoom(name);
      } catch (error) {
        this.chat.toast(errorMessage(error));
      }
    });
  }
}
