/** The open conversation lives in the URL hash: `#/c/{id}`; anything else is a new chat. */

export function conversationIdFromHash(hash: string): string | null {
  const m = /^#\/c\/([^/?#]+)$/.exec(hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
}

export function hashForConversation(id: string | null): string {
  return id ? `#/c/${encodeURIComponent(id)}` : "#/";
}
