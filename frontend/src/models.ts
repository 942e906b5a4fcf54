/**
 * Which model answers: the choice is remembered per conversation (and, for a new chat, the last
 * one picked) in localStorage, and falls back to the server's default when the remembered model is
 * no longer offered.
 */

import type { ModelInfo } from "./types";

const PREFIX = "conversa.model.";
/** The key of the choice for a new chat (the last model picked). */
export const NEW_CHAT_KEY = `${PREFIX}new`;

export function storageKey(conversationId: string | null): string {
  return conversationId ? `${PREFIX}c.${conversationId}` : NEW_CHAT_KEY;
}

/** Storage that may be missing or refuse writes (private mode, quota): failures are ignored. */
export interface ChoiceStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

function read(store: ChoiceStore | null, key: string): string | null {
  try {
    return store?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function write(store: ChoiceStore | null, key: string, value: string): void {
  try {
    store?.setItem(key, value);
  } catch {
    // Not remembered: the choice still holds for this page.
  }
}

/** The server's default model (the first when none is marked). */
export function defaultModel(models: ModelInfo[]): ModelInfo | null {
  return models.find((m) => m.default) ?? models[0] ?? null;
}

/**
 * The model a conversation uses: its remembered choice, else (a conversation opened for the first
 * time here) the default; a new chat starts with the last model picked. A remembered id the server
 * no longer offers gives way to the default.
 */
export function chosenModel(models: ModelInfo[], conversationId: string | null, store: ChoiceStore | null): ModelInfo | null {
  const remembered = read(store, storageKey(conversationId));
  return models.find((m) => m.id === remembered) ?? defaultModel(models);
}

/** Remembers a choice for a conversation (or a new chat); a pick is also the next new chat's model. */
export function rememberModel(store: ChoiceStore | null, conversationId: string | null, id: string): void {
  write(store, storageKey(conversationId), id);
  write(store, NEW_CHAT_KEY, id);
}

/** A new chat got its id: its model is the one it was started with. */
export function adoptNewChat(store: ChoiceStore | null, conversationId: string, id: string): void {
  write(store, storageKey(conversationId), id);
}

const PROVIDERS: Record<string, string> = {
  openai: "OpenAI-compatible",
  anthropic: "Anthropic",
  bedrock: "Amazon Bedrock",
  local: "offline",
};

export function providerLabel(provider: string): string {
  return PROVIDERS[provider] ?? provider;
}

/** What the picker shows for a model: its name, who serves it, whether it reads images. */
export function modelLabel(m: ModelInfo): string {
  return `${m.name} · ${providerLabel(m.provider)}${m.vision ? " · reads images" : ""}`;
}

/** The note shown when images are attached for a model that cannot see them; null otherwise. */
export function visionNote(model: ModelInfo | null, imageNames: string[]): string | null {
  if (!model || model.vision || imageNames.length === 0) return null;
  const which = imageNames.length === 1 ? imageNames[0] : `${imageNames.length} images`;
  return `${model.name} can't see images: ${which} will be sent by name only. Pick a model that reads images to have ${
    imageNames.length === 1 ? "it" : "them"
  } looked at.`;
}
