/**
 * Conversa web app: wires the API client, the sidebar, the message view and the composer. A turn
 * lives on the server: opening a conversation whose answer is being generated follows it, Stop
 * asks the server to stop it, and a dropped stream picks up after the last event it received.
 */

import "./styles.css";
import { Api, type ChatHandlers } from "./api";
import { LocalAuth, OidcAuth, PastedToken } from "./auth";
import { loadConfig, type AppConfig } from "./config";
import { STREAM_INTERRUPTED, describeError, technicalDetail, toApiError, type ApiError } from "./errors";
import { namePastedFile, ACCEPT_ATTR, formatBytes } from "./files";
import { conversationIdFromHash, hashForConversation } from "./router";
import { applyTheme, initialTheme, saveTheme, type Theme } from "./theme";
import { branchOf, siblingPlaces } from "./tree";
import type { Conversation, DoneEvent, Me, MetaEvent, Message } from "./types";
import { Attachments } from "./ui/attachments";
import { ChatView, addUserActions, shownFromMeta, type ShownFile, type StreamingAnswer } from "./ui/chat";
import { $, h } from "./ui/dom";
import { HealthMonitor } from "./ui/health";
import { ModelPicker } from "./ui/models";
import { Sidebar } from "./ui/sidebar";
import { NOTICE_KEY, SignInScreen } from "./ui/signin";
import { AdminDialog } from "./ui/admin";
import { UsageDialog } from "./ui/usage";
import { KeysDialog, UserMenu } from "./ui/user";

const NEW_TITLE = "New conversation";

/** How long a stop may take on the server before the app lets go of the stream itself. */
const STOP_GRACE_MS = 5000;
/** Reconnections of a dropped stream before the answer is reported as interrupted. */
const RESUME_ATTEMPTS = 3;

interface TurnInput {
  text: string;
  fileIds: string[];
  shown: ShownFile[];
}

/** The answer being streamed into the view. */
interface Turn {
  controller: AbortController;
  answer: StreamingAnswer;
  /** Known from `meta` (or from the conversation, when following). */
  answerId: string | null;
  /** Stop was pressed: the server is asked once the answer's id is known. */
  stopRequested: boolean;
}

/** What the caller of [`App.streamAnswer`] adds to the event handlers. */
interface TurnHooks {
  onMeta?(meta: MetaEvent): void;
  onError(err: ApiError): void;
}

const delay = (ms: number) => new Promise((r) => window.setTimeout(r, ms));

class App {
  private conversationId: string | null = null;
  private streaming: Turn | null = null;
  /** Every message of the open conversation's tree. */
  private tree: Message[] = [];
  private rateLimitedUntil = 0;
  private rateTimer: number | undefined;
  private openSeq = 0;

  private readonly api: Api;
  private readonly sidebar: Sidebar;
  private readonly chat: ChatView;
  private readonly attachments: Attachments;
  private readonly health: HealthMonitor;
  private readonly models: ModelPicker;

  private readonly input = $("composer-input") as HTMLTextAreaElement;
  private readonly sendBtn = $("send") as HTMLButtonElement;
  private readonly stopBtn = $("stop") as HTMLButtonElement;
  private readonly composerStatus = $("composer-status");
  private readonly composerError = $("composer-error");
  private readonly title = $("conv-title");
  private readonly app = $("app");

  constructor(
    private readonly config: AppConfig,
    api: Api,
    me: Me | null,
    signOut: () => void,
  ) {
    this.api = api;
    if (me) new UserMenu(me, new KeysDialog(api), signOut, new UsageDialog(api), new AdminDialog(api));
    this.health = new HealthMonitor(this.api, $("banner"), $("model"), (reachable) => {
      if (reachable) void this.sidebar.reload();
    });
    this.api.onNetworkFailure = () => void this.health.check();
    this.sidebar = new Sidebar(
      this.api,
      $("conv-list") as HTMLUListElement,
      $("conv-sentinel"),
      $("conv-status"),
      $("conv-scroll"),
      $("search") as HTMLInputElement,
      $("confirm-dialog") as HTMLDialogElement,
      {
        onDeleted: (id) => {
          if (id === this.conversationId) this.newChat();
        },
        onRenamed: (conv) => {
          if (conv.id === this.conversationId) this.setTitle(conv.title);
        },
        onNavigate: () => this.closeDrawer(),
      },
    );
    this.models = new ModelPicker(
      this.api,
      $("model-pick"),
      $("model-picker") as HTMLSelectElement,
      $("model-note"),
      storage(),
    );
    this.chat = new ChatView(this.api, $("messages"), $("message-list"), $("empty"), $("jump") as HTMLButtonElement);
    this.chat.actions = {
      regenerate: (id) => void this.regenerate(id),
      edit: (id, text) => void this.edit(id, text),
      show: (id) => void this.showBranch(id),
    };
    this.attachments = new Attachments(
      this.api,
      $("chips"),
      () => this.config.maxUploadBytes,
      () => this.conversationId,
      () => this.updateComposer(),
      (msg) => this.showComposerError(msg),
    );
    this.bind();
  }

  start(): void {
    this.health.start();
    void this.models.load();
    void this.sidebar.reload();
    void this.route();
    this.updateComposer();
  }

  // ---- wiring -------------------------------------------------------------------------------

  private bind(): void {
    window.addEventListener("hashchange", () => void this.route());
    $("new-chat").addEventListener("click", () => {
      this.newChat();
      this.closeDrawer();
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.send();
    });
    this.stopBtn.addEventListener("click", () => this.stop());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        void this.send();
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.updateComposer();
    });
    this.input.addEventListener("paste", (e) => {
      const files = Array.from(e.clipboardData?.files ?? []);
      if (files.length === 0) return;
      e.preventDefault();
      this.attachments.add(files.map((f, i) => namePastedFile(f, i)));
    });
    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || e.defaultPrevented) return;
      if ((document.querySelector("dialog[open]") as HTMLDialogElement | null) !== null) return;
      if (this.streaming) {
        e.preventDefault();
        this.stop();
      } else if (this.app.classList.contains("drawer-open")) {
        this.closeDrawer();
        $("menu").focus();
      }
    });

    const fileInput = $("file-input") as HTMLInputElement;
    fileInput.accept = ACCEPT_ATTR;
    $("attach").addEventListener("click", () => fileInput.click());
    fileInput.addEventListener("change", () => {
      this.attachments.add(Array.from(fileInput.files ?? []));
      fileInput.value = "";
      this.input.focus();
    });
    $("file-limit").textContent = `up to ${formatBytes(this.config.maxUploadBytes)} each`;

    // Drag and drop anywhere on the page.
    const overlay = $("drop-overlay");
    let depth = 0;
    const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes("Files");
    document.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      depth++;
      overlay.hidden = false;
    });
    document.addEventListener("dragleave", (e) => {
      if (!hasFiles(e)) return;
      depth = Math.max(0, depth - 1);
      if (depth === 0) overlay.hidden = true;
    });
    document.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      this.attachments.add(Array.from(e.dataTransfer?.files ?? []));
      this.input.focus();
    });

    // Theme.
    const themeBtn = $("theme");
    const showTheme = (t: Theme) => {
      const other = t === "dark" ? "light" : "dark";
      themeBtn.setAttribute("aria-label", `Switch to ${other} theme`);
      themeBtn.title = `Switch to ${other} theme`;
      themeBtn.dataset.theme = t;
    };
    showTheme(initialTheme());
    themeBtn.addEventListener("click", () => {
      const next: Theme = document.documentElement.dataset.theme === "light" ? "dark" : "light";
      applyTheme(next);
      saveTheme(next);
      showTheme(next);
    });

    // Drawer on small screens.
    $("menu").addEventListener("click", () => {
      if (this.app.classList.contains("drawer-open")) this.closeDrawer();
      else this.openDrawer();
    });
    $("backdrop").addEventListener("click", () => this.closeDrawer());
  }

  private openDrawer(): void {
    this.app.classList.add("drawer-open");
    $("menu").setAttribute("aria-expanded", "true");
    $("backdrop").hidden = false;
    ($("search") as HTMLInputElement).focus();
  }

  private closeDrawer(): void {
    if (!this.app.classList.contains("drawer-open")) return;
    this.app.classList.remove("drawer-open");
    $("menu").setAttribute("aria-expanded", "false");
    $("backdrop").hidden = true;
  }

  private autosize(): void {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 240)}px`;
  }

  private setTitle(title: string): void {
    this.title.textContent = title;
    document.title = title && title !== NEW_TITLE ? `${title} · Conversa` : "Conversa";
  }

  // ---- navigation ---------------------------------------------------------------------------

  private async route(): Promise<void> {
    const id = conversationIdFromHash(location.hash);
    if (id && id === this.conversationId) return; // we set it ourselves
    if (id) await this.open(id);
    else this.newChat(false);
  }

  private newChat(updateHash = true): void {
    this.detach();
    this.openSeq++;
    this.conversationId = null;
    if (updateHash && location.hash !== "#/") history.pushState(null, "", hashForConversation(null));
    this.sidebar.setActive(null);
    this.models.setConversation(null);
    this.chat.clear();
    this.setTitle(NEW_TITLE);
    this.updateComposer();
    this.input.focus();
  }

  /** Lets go of the answer streamed into the view (the server goes on generating it). */
  private detach(): void {
    this.streaming?.controller.abort();
    this.streaming = null;
  }

  private async open(id: string): Promise<void> {
    this.detach();
    const seq = ++this.openSeq;
    this.conversationId = id;
    this.sidebar.setActive(id);
    this.models.setConversation(id);
    this.setTitle(this.sidebar.titleOf(id) ?? "");
    this.chat.showLoading();
    this.updateComposer();
    try {
      const [conv, messages] = await Promise.all([this.api.getConversation(id), this.api.listMessages(id, { all: true })]);
      if (seq !== this.openSeq) return;
      this.setTitle(conv.title);
      this.sidebar.setTitle(conv.id, conv.title);
      this.sidebar.setGenerating(conv.id, conv.generating_message_id ?? null);
      this.showTree(conv, messages);
    } catch (e) {
      if (seq !== this.openSeq) return;
      const err = toApiError(e);
      if (err.code === "not_found") {
        this.setTitle("Not found");
        this.chat.showNotice("This conversation doesn't exist (it may have been deleted).", {
          label: "Start a new chat",
          run: () => this.newChat(),
        });
      } else {
        this.chat.showNotice(`Couldn't open this conversation. ${describeError(err)}`, {
          label: "Try again",
          run: () => void this.open(id),
        });
      }
    }
  }

  /**
   * Shows the current branch of a conversation's tree; when its answer is being generated, follows
   * it from the first event.
   */
  private showTree(conv: Conversation, messages: Message[]): void {
    this.tree = messages;
    const leaf = conv.current_message_id ?? messages[messages.length - 1]?.id;
    let branch = branchOf(messages, leaf);
    if (branch.length === 0) branch = messages.filter((m) => !m.parent_id).length <= 1 ? messages : [];
    const generating = conv.generating_message_id ?? null;
    const shown = generating !== null && branch.some((m) => m.id === generating) ? generating : null;
    this.chat.renderHistory(branch, { places: siblingPlaces(messages), generating: shown });
    if (shown) void this.follow(conv.id, shown);
  }

  /** Reads the open conversation's tree again and shows its current branch. */
  private async reloadTree(): Promise<void> {
    const id = this.conversationId;
    if (!id) return;
    const seq = this.openSeq;
    try {
      const [conv, messages] = await Promise.all([this.api.getConversation(id), this.api.listMessages(id, { all: true })]);
      if (seq !== this.openSeq || id !== this.conversationId || this.streaming) return;
      this.showTree(conv, messages);
    } catch {
      // The branch shown stays; the next open reads it again.
    }
  }

  /** Shows the branch through a message (‹ ›), and makes it the conversation's current one. */
  private async showBranch(messageId: string): Promise<void> {
    const id = this.conversationId;
    if (!id || this.streaming) return;
    const seq = this.openSeq;
    try {
      const conv = await this.api.setCurrent(id, messageId);
      if (seq !== this.openSeq || this.streaming) return;
      this.showTree(conv, this.tree);
    } catch (e) {
      this.showComposerError(`Couldn't show that version. ${describeError(toApiError(e))}`);
    }
  }

  /** Re-reads a conversation after a turn (the title may have landed after the stream). */
  private async refreshConversation(id: string, attempt = 0): Promise<void> {
    let conv: Conversation;
    try {
      conv = await this.api.getConversation(id);
    } catch {
      return;
    }
    this.sidebar.upsertFirst(conv);
    if (id === this.conversationId) this.setTitle(conv.title);
    if (conv.title === NEW_TITLE && attempt < 4) {
      window.setTimeout(() => void this.refreshConversation(id, attempt + 1), 1000 * 2 ** attempt);
    }
  }

  // ---- composer ----------------------------------------------------------------------------

  private updateComposer(): void {
    const streaming = !!this.streaming;
    const waitingFiles = this.attachments.busy;
    const limited = this.rateLimitedUntil > Date.now();
    const hasContent = this.input.value.trim() !== "" || this.attachments.ready.length > 0;
    this.sendBtn.hidden = streaming;
    this.stopBtn.hidden = !streaming;
    this.sendBtn.disabled = streaming || waitingFiles || limited || !hasContent;
    let status = "";
    if (limited) {
      const s = Math.ceil((this.rateLimitedUntil - Date.now()) / 1000);
      status = `Too many messages. You can send again in ${s} s.`;
    } else if (waitingFiles) status = "Waiting for files to finish uploading…";
    if (this.composerStatus.textContent !== status) this.composerStatus.textContent = status;
    this.models.setImages(
      this.attachments.items.filter((a) => a.fileType === "image" && a.state !== "failed").map((a) => a.file.name),
    );
  }

  private showComposerError(message: string): void {
    this.composerError.replaceChildren(h("span", { text: message }));
    const close = h("button", { type: "button", class: "btn btn-small", text: "Dismiss" });
    close.addEventListener("click", () => this.clearComposerError());
    this.composerError.append(close);
    this.composerError.hidden = false;
  }

  private clearComposerError(): void {
    this.composerError.hidden = true;
    this.composerError.replaceChildren();
  }

  private startRateLimit(seconds: number, onTick?: (left: number) => void): void {
    this.rateLimitedUntil = Date.now() + seconds * 1000;
    window.clearInterval(this.rateTimer);
    const tick = () => {
      const left = Math.max(0, Math.ceil((this.rateLimitedUntil - Date.now()) / 1000));
      onTick?.(left);
      this.updateComposer();
      if (left <= 0) window.clearInterval(this.rateTimer);
    };
    this.rateTimer = window.setInterval(tick, 1000);
    tick();
  }

  // ---- chat turns --------------------------------------------------------------------------

  private async send(): Promise<void> {
    if (this.streaming || this.attachments.busy || this.rateLimitedUntil > Date.now()) return;
    const text = this.input.value.trim();
    const ready = this.attachments.ready;
    if (!text && ready.length === 0) return;
    const input: TurnInput = {
      text,
      fileIds: ready.map((a) => a.meta!.id),
      shown: ready.map((a) => ({ ...shownFromMeta(a.meta!), previewUrl: a.previewUrl })),
    };
    this.input.value = "";
    this.autosize();
    this.attachments.clearSent();
    this.clearComposerError();
    await this.runTurn(input);
  }

  /**
   * Stops the answer on the server (its stream then ends with `done`, `stopped`). Before the
   * answer has an id, the request goes out as soon as it has one; if the server cannot be asked,
   * or takes too long, the app lets go of the stream.
   */
  private stop(): void {
    const turn = this.streaming;
    if (!turn) return;
    if (turn.stopRequested) {
      turn.controller.abort();
      return;
    }
    turn.stopRequested = true;
    this.stopBtn.disabled = true;
    window.setTimeout(() => {
      if (this.streaming === turn) turn.controller.abort();
    }, STOP_GRACE_MS);
    if (turn.answerId) void this.requestStop(turn);
  }

  private async requestStop(turn: Turn): Promise<void> {
    if (!turn.answerId) return;
    try {
      await this.api.stopTurn(turn.answerId);
    } catch {
      turn.controller.abort();
    }
  }

  /**
   * Streams an answer into `answer` until `done`: `open` starts the stream; when it drops after
   * the answer has an id, the stream is followed again from the last event received.
   */
  private async streamAnswer(
    turn: Turn,
    open: (handlers: ChatHandlers, signal: AbortSignal) => Promise<DoneEvent>,
    hooks: TurnHooks,
  ): Promise<DoneEvent | null> {
    const { answer, controller } = turn;
    let last = 0;
    const handlers: ChatHandlers = {
      onMeta: (meta) => {
        turn.answerId = meta.assistant_message_id;
        answer.setId(meta.assistant_message_id);
        if (turn.stopRequested) void this.requestStop(turn);
        hooks.onMeta?.(meta);
      },
      onQueued: (q) => answer.queued(q.position),
      onToken: (t) => answer.append(t),
      onTitle: (t) => {
        this.sidebar.setTitle(t.conversation_id, t.title);
        if (t.conversation_id === this.conversationId) this.setTitle(t.title);
      },
      onEventId: (id) => (last = id),
    };
    let done: DoneEvent | null = null;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          done = attempt === 0 ? await open(handlers, controller.signal) : await this.api.followTurn(turn.answerId!, last, handlers, controller.signal);
          break;
        } catch (e) {
          const err = toApiError(e);
          if (controller.signal.aborted || err.code !== STREAM_INTERRUPTED || !turn.answerId || attempt >= RESUME_ATTEMPTS) throw e;
          await delay(250 * 2 ** attempt);
          if (controller.signal.aborted) throw e;
        }
      }
      answer.finish(done.usage, done.citations);
      if (done.finish_reason === "stopped") this.markStopped(answer);
    } catch (e) {
      answer.finish();
      if ((e as Error).name === "AbortError" || controller.signal.aborted) this.markStopped(answer);
      else hooks.onError(toApiError(e));
    } finally {
      if (this.streaming === turn) this.streaming = null;
      this.stopBtn.disabled = false;
      this.updateComposer();
    }
    return done;
  }

  private markStopped(answer: StreamingAnswer): void {
    answer.note(answer.text ? "Stopped." : "Stopped before the answer started.");
    answer.el.classList.add("msg-stopped");
  }

  private beginTurn(answer: StreamingAnswer, answerId: string | null = null): Turn {
    const turn: Turn = { controller: new AbortController(), answer, answerId, stopRequested: false };
    this.streaming = turn;
    this.updateComposer();
    return turn;
  }

  /** Follows an answer being generated (after a reload, or in another tab) from its first event. */
  private async follow(conversationId: string, answerId: string): Promise<void> {
    if (this.streaming) return;
    const answer = this.chat.resumeAnswer(answerId);
    if (!answer) return;
    const turn = this.beginTurn(answer, answerId);
    await this.streamAnswer(turn, (handlers, signal) => this.api.followTurn(answerId, 0, handlers, signal), {
      onError: (err) => {
        answer.el.classList.add("msg-failed");
        answer.note(describeError(err), "error");
      },
    });
    this.sidebar.setGenerating(conversationId, null);
    void this.refreshConversation(conversationId);
  }

  /** A new answer to the question `answerId` answered: a sibling, shown in its place. */
  private async regenerate(answerId: string): Promise<void> {
    const convId = this.conversationId;
    if (this.streaming || !convId) return;
    const el = this.chat.elementOf(answerId);
    if (!el) return;
    this.clearComposerError();
    this.chat.removeFrom(el);
    const answer = this.chat.startAnswer();
    const turn = this.beginTurn(answer);
    const openSeq = this.openSeq;
    const model = this.models.selected;
    const done = await this.streamAnswer(turn, (handlers, signal) => this.api.regenerate(answerId, model, handlers, signal), {
      onMeta: (meta) => this.sidebar.setGenerating(convId, meta.assistant_message_id),
      onError: (err) => {
        answer.el.classList.add("msg-failed");
        const note = answer.note(describeError(err), "error");
        note.dataset.code = err.code;
      },
    });
    this.sidebar.setGenerating(convId, null);
    void this.refreshConversation(convId);
    if (openSeq === this.openSeq && (done || turn.answerId)) await this.reloadTree();
  }

  /** Sends a new version of a question: a sibling of it, with the answers after it left in the old branch. */
  private async edit(messageId: string, text: string): Promise<void> {
    const convId = this.conversationId;
    if (this.streaming || !convId) return;
    let m = this.tree.find((x) => x.id === messageId);
    if (!m) {
      // Sent since the tree was read.
      try {
        this.tree = await this.api.listMessages(convId, { all: true });
      } catch (e) {
        this.showComposerError(`Couldn't edit that message. ${describeError(toApiError(e))}`);
        return;
      }
      m = this.tree.find((x) => x.id === messageId);
    }
    const el = this.chat.elementOf(messageId);
    if (!m || !el || this.streaming || convId !== this.conversationId) return;
    this.clearComposerError();
    this.chat.removeFrom(el);
    const files = m.files ?? [];
    await this.runTurn({ text, fileIds: files.map((f) => f.id), shown: files.map(shownFromMeta) }, m.parent_id ?? null);
  }

  /** Sends a question (after the current leaf, or after `parentId` when it is given: an edit). */
  private async runTurn(input: TurnInput, parentId?: string | null): Promise<void> {
    const userEl = this.chat.addUserMessage(input.text, input.shown);
    const answer = this.chat.startAnswer();
    const turn = this.beginTurn(answer);
    let convId = this.conversationId;
    const openSeq = this.openSeq;
    const model = this.models.selected;
    const done = await this.streamAnswer(
      turn,
      (handlers, signal) =>
        this.api.sendChat({ message: input.text, conversationId: convId, fileIds: input.fileIds, model, parentId }, handlers, signal),
      {
        onMeta: (meta) => {
          convId = meta.conversation_id;
          userEl.dataset.id = meta.user_message_id;
          addUserActions(userEl);
          if (meta.created_conversation) this.models.adopt(convId, model, openSeq === this.openSeq);
          if (openSeq !== this.openSeq) return;
          if (this.conversationId !== convId) {
            this.conversationId = convId;
            history.pushState(null, "", hashForConversation(convId));
          }
          if (meta.created_conversation) {
            const now = new Date().toISOString();
            this.sidebar.upsertFirst({ id: convId, title: NEW_TITLE, message_count: 1, created_at: now, updated_at: now });
          }
          this.sidebar.setActive(convId);
          this.sidebar.setGenerating(convId, meta.assistant_message_id);
        },
        onError: (err) => this.showTurnError(answer, userEl, input, err, parentId),
      },
    );
    if (convId) {
      this.sidebar.setGenerating(convId, null);
      void this.refreshConversation(convId);
    }
    if (openSeq !== this.openSeq) return;
    this.input.focus();
    // An edit made a new version of a question: show its place among them.
    if (parentId !== undefined && (done || turn.answerId)) await this.reloadTree();
  }

  private showTurnError(answer: StreamingAnswer, userEl: HTMLElement, input: TurnInput, err: ApiError, parentId?: string | null): void {
    answer.el.classList.add("msg-failed");
    const note = answer.note(describeError(err), "error");
    note.dataset.code = err.code;
    const retry = h("button", { type: "button", class: "btn btn-small retry", text: "Retry" });
    retry.addEventListener("click", () => {
      if (this.streaming) return;
      userEl.remove();
      answer.el.remove();
      void this.runTurn(input, parentId);
    });
    note.append(retry);
    const detail = technicalDetail(err);
    if (detail) {
      note.append(h("details", { class: "msg-note-details" }, h("summary", { text: "Details" }), h("code", { text: detail })));
    }
    if (err.code === "rate_limited") {
      const wait = err.retryAfter ?? 10;
      retry.disabled = true;
      const text = note.querySelector(".msg-note-text")!;
      this.startRateLimit(wait, (left) => {
        text.textContent = describeError({ ...err, code: err.code, retryAfter: left });
        retry.disabled = left > 0;
        if (left <= 0) text.textContent = "You can send again now.";
      });
    }
  }
}

/** localStorage, when the browser allows it. */
function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** Starts over at the sign-in screen (saying why, when there is a reason). */
function restart(notice?: string): void {
  try {
    if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
  } catch {
    // no storage: no notice
  }
  location.reload();
}

/** Signs in as the server's mode asks; resolves with who is signed in (null in mode `none`). */
async function signIn(api: Api, screen: SignInScreen): Promise<{ me: Me | null; signOut: () => void }> {
  let auth;
  try {
    auth = await api.authConfig();
  } catch {
    // The server can't be reached: start as before; the health banner says so.
    return { me: null, signOut: () => undefined };
  }
  const signedOut = (reason: { code: string; message: string }) =>
    restart(reason.code === "forbidden" ? reason.message : "Your session has ended. Please sign in again.");
  api.onSignedOut = signedOut;
  switch (auth.mode) {
    case "none":
      api.onSignedOut = null;
      return { me: null, signOut: () => undefined };
    case "tokens": {
      const pasted = new PastedToken();
      api.credentials = pasted;
      if (!pasted.signedIn) await screen.token(pasted);
      return { me: await api.me(), signOut: () => (pasted.signOut(), restart()) };
    }
    case "local": {
      const local = new LocalAuth(api.url(""));
      api.credentials = local;
      if (!(local.remembered && (await local.resume()))) await screen.local(local, auth);
      local.onEnded = () => signedOut({ code: "unauthorized", message: "" });
      const signOut = () => void local.signOut().then(() => restart());
      return { me: await api.me(), signOut };
    }
    case "oidc": {
      if (!auth.oidc) throw new Error("the server names no identity provider");
      const oidc = new OidcAuth(auth.oidc);
      api.credentials = oidc;
      if (OidcAuth.isReturn()) {
        screen.busy("Completing the sign-in…");
        try {
          await oidc.complete();
        } catch (e) {
          screen.oidc(oidc, (e as Error).message);
          return new Promise(() => undefined); // the button leaves the page
        }
      } else if (OidcAuth.auto) {
        screen.busy("Signing you in…");
        await oidc.begin();
        return new Promise(() => undefined);
      } else {
        screen.oidc(oidc);
        return new Promise(() => undefined);
      }
      oidc.onEnded = () => signedOut({ code: "unauthorized", message: "" });
      return { me: await api.me(), signOut: () => (oidc.signOut(), restart()) };
    }
  }
}

async function main(): Promise<void> {
  applyTheme(initialTheme());
  const config = await loadConfig();
  const api = new Api(config);
  const screen = new SignInScreen($("signin"), $("app"));
  let session: { me: Me | null; signOut: () => void };
  try {
    session = await signIn(api, screen);
  } catch (e) {
    screen.busy(`Signing in failed: ${describeError(toApiError(e))}`);
    return;
  }
  screen.close();
  new App(config, api, session.me, session.signOut).start();
}

void main();
