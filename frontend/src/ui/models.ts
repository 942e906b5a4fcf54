/**
 * The model picker under the message box: the models of `GET /api/models` with their provider and
 * whether they read images, the choice remembered per conversation, and a note when attached
 * images would go to a model that cannot see them.
 */

import type { Api } from "../api";
import { adoptNewChat, chosenModel, modelLabel, rememberModel, visionNote, type ChoiceStore } from "../models";
import type { ModelInfo } from "../types";
import { h } from "./dom";

export class ModelPicker {
  private models: ModelInfo[] = [];
  private conversationId: string | null = null;
  private current: ModelInfo | null = null;
  private images: string[] = [];

  constructor(
    private readonly api: Api,
    private readonly wrap: HTMLElement,
    private readonly select: HTMLSelectElement,
    private readonly note: HTMLElement,
    private readonly store: ChoiceStore | null,
  ) {
    select.addEventListener("change", () => {
      const picked = this.models.find((m) => m.id === select.value);
      if (!picked) return;
      this.current = picked;
      rememberModel(this.store, this.conversationId, picked.id);
      this.renderNote();
    });
  }

  /** Reads the models on offer; a server without the route keeps its own default, unpicked. */
  async load(): Promise<void> {
    try {
      this.models = await this.api.listModels();
    } catch {
      this.models = [];
    }
    this.current = chosenModel(this.models, this.conversationId, this.store);
    this.render();
  }

  /** The conversation shown now (`null`: a new chat). */
  setConversation(id: string | null): void {
    this.conversationId = id;
    this.current = chosenModel(this.models, id, this.store);
    this.render();
  }

  /**
   * A new chat got its id from the server: it keeps `modelId`, the model it was started with;
   * `shown` when it is still the conversation on screen.
   */
  adopt(conversationId: string, modelId: string | undefined, shown: boolean): void {
    if (modelId) adoptNewChat(this.store, conversationId, modelId);
    if (shown) this.conversationId = conversationId;
  }

  /** The id to send with a turn; none when the server offers no list. */
  get selected(): string | undefined {
    return this.models.length > 0 ? this.current?.id : undefined;
  }

  /** The names of the images attached to the next message. */
  setImages(names: string[]): void {
    if (names.length === this.images.length && names.every((n, i) => n === this.images[i])) return;
    this.images = names;
    this.renderNote();
  }

  private render(): void {
    // A choice of one is no choice: the header already names the model.
    this.wrap.hidden = this.models.length < 2;
    this.select.replaceChildren(
      ...this.models.map((m) => {
        const option = h("option", { value: m.id, text: modelLabel(m) });
        option.selected = m.id === this.current?.id;
        return option;
      }),
    );
    if (this.current) this.select.value = this.current.id;
    this.select.title = this.current ? modelLabel(this.current) : "";
    this.renderNote();
  }

  private renderNote(): void {
    const text = visionNote(this.current, this.images);
    this.select.title = this.current ? modelLabel(this.current) : "";
    this.note.hidden = text === null;
    this.note.textContent = text ?? "";
  }
}
