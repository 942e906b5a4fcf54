import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Api } from "../src/api";
import {
  NEW_CHAT_KEY,
  adoptNewChat,
  chosenModel,
  modelLabel,
  rememberModel,
  storageKey,
  visionNote,
  type ChoiceStore,
} from "../src/models";
import type { ModelInfo } from "../src/types";
import { ModelPicker } from "../src/ui/models";

const model = (id: string, extra: Partial<ModelInfo> = {}): ModelInfo => ({
  id,
  name: id.toUpperCase(),
  provider: "openai",
  vision: false,
  context_tokens: 8192,
  default: false,
  price: null,
  ...extra,
});

const GPT = model("gpt", { default: true, vision: true });
const CLAUDE = model("claude", { provider: "anthropic", vision: true, name: "Claude Sonnet" });
const NOVA = model("nova-micro", { provider: "bedrock", name: "Nova Micro" });
const MODELS = [GPT, CLAUDE, NOVA];

function memory(): ChoiceStore & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  };
}

describe("the model choice", () => {
  it("is the default until something is picked, then remembered per conversation", () => {
    const store = memory();
    expect(chosenModel(MODELS, null, store)?.id).toBe("gpt");
    expect(chosenModel(MODELS, "c1", store)?.id).toBe("gpt");
    rememberModel(store, "c1", "claude");
    expect(chosenModel(MODELS, "c1", store)?.id).toBe("claude");
    // Another conversation keeps the default; a new chat starts with the last pick.
    expect(chosenModel(MODELS, "c2", store)?.id).toBe("gpt");
    expect(chosenModel(MODELS, null, store)?.id).toBe("claude");
  });

  it("gives way to the default when the remembered model is no longer offered", () => {
    const store = memory();
    rememberModel(store, "c1", "retired");
    expect(chosenModel(MODELS, "c1", store)?.id).toBe("gpt");
    // The first when none is marked.
    expect(chosenModel([model("only")], "c1", store)?.id).toBe("only");
    expect(chosenModel([], "c1", store)).toBeNull();
  });

  it("a new chat's model carries over to the conversation it becomes", () => {
    const store = memory();
    adoptNewChat(store, "c9", "nova-micro");
    expect(store.data.get(storageKey("c9"))).toBe("nova-micro");
    expect(store.data.has(NEW_CHAT_KEY)).toBe(false);
  });

  it("survives storage that refuses", () => {
    const broken: ChoiceStore = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("quota");
      },
      removeItem: () => undefined,
    };
    expect(() => rememberModel(broken, "c1", "claude")).not.toThrow();
    expect(chosenModel(MODELS, "c1", broken)?.id).toBe("gpt");
    expect(chosenModel(MODELS, "c1", null)?.id).toBe("gpt");
  });
});

describe("labels and notes", () => {
  it("show the provider and whether the model reads images", () => {
    expect(modelLabel(CLAUDE)).toBe("Claude Sonnet · Anthropic · reads images");
    expect(modelLabel(NOVA)).toBe("Nova Micro · Amazon Bedrock");
    expect(modelLabel(model("local", { provider: "local", name: "SmolLM2" }))).toBe("SmolLM2 · offline");
  });

  it("warn only when images go to a model without vision", () => {
    expect(visionNote(GPT, ["chart.png"])).toBeNull();
    expect(visionNote(NOVA, [])).toBeNull();
    expect(visionNote(NOVA, ["chart.png"])).toContain("Nova Micro can't see images: chart.png");
    expect(visionNote(NOVA, ["a.png", "b.png"])).toContain("2 images");
  });
});

describe("ModelPicker", () => {
  let wrap: HTMLElement;
  let select: HTMLSelectElement;
  let note: HTMLElement;

  beforeEach(() => {
    document.body.innerHTML = '<span id="w" hidden><select id="s"></select></span><p id="n" hidden></p>';
    wrap = document.getElementById("w")!;
    select = document.getElementById("s") as HTMLSelectElement;
    note = document.getElementById("n")!;
  });
  afterEach(() => vi.unstubAllGlobals());

  const api = (items: ModelInfo[] | null) => {
    const fetchMock = vi.fn(async () =>
      items === null
        ? new Response(JSON.stringify({ error: { code: "not_found", message: "no such route" } }), { status: 404 })
        : new Response(JSON.stringify({ items }), { headers: { "content-type": "application/json" } }),
    );
    vi.stubGlobal("fetch", fetchMock);
    return { api: new Api({ apiBase: "", maxUploadBytes: 100 }), fetchMock };
  };

  it("lists the models and remembers a pick for the conversation on screen", async () => {
    const store = memory();
    const { api: a, fetchMock } = api(MODELS);
    const picker = new ModelPicker(a, wrap, select, note, store);
    await picker.load();
    expect(fetchMock).toHaveBeenCalledWith("/api/models", expect.anything());
    expect(wrap.hidden).toBe(false);
    expect(Array.from(select.options).map((o) => o.textContent)).toEqual([
      "GPT · OpenAI-compatible · reads images",
      "Claude Sonnet · Anthropic · reads images",
      "Nova Micro · Amazon Bedrock",
    ]);
    expect(picker.selected).toBe("gpt");

    picker.setConversation("c1");
    select.value = "nova-micro";
    select.dispatchEvent(new Event("change"));
    expect(picker.selected).toBe("nova-micro");
    expect(store.data.get(storageKey("c1"))).toBe("nova-micro");

    picker.setConversation("c2");
    expect(select.value).toBe("gpt");
    picker.setConversation("c1");
    expect(select.value).toBe("nova-micro");
  });

  it("notes attached images a model cannot see, and clears the note for one that can", async () => {
    const { api: a } = api(MODELS);
    const picker = new ModelPicker(a, wrap, select, note, memory());
    await picker.load();
    picker.setImages(["cat.png"]);
    expect(note.hidden).toBe(true);
    select.value = "nova-micro";
    select.dispatchEvent(new Event("change"));
    expect(note.hidden).toBe(false);
    expect(note.textContent).toContain("cat.png");
    picker.setImages([]);
    expect(note.hidden).toBe(true);
  });

  it("stays out of the way when the server offers one model or none", async () => {
    const one = api([model("gpt", { default: true })]);
    const picker = new ModelPicker(one.api, wrap, select, note, memory());
    await picker.load();
    expect(wrap.hidden).toBe(true);
    expect(picker.selected).toBe("gpt");

    const none = api(null);
    const older = new ModelPicker(none.api, wrap, select, note, memory());
    await older.load();
    expect(wrap.hidden).toBe(true);
    expect(older.selected).toBeUndefined();
  });
});

describe("Api.sendChat", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("sends the picked model with the turn", async () => {
    let sent: FormData | null = null;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_url: string, init: RequestInit) => {
        sent = init.body as FormData;
        return new Response('event: done\ndata: {"message_id":"a1","finish_reason":"stop"}\n\n', {
          headers: { "content-type": "text/event-stream" },
        });
      }),
    );
    await new Api({ apiBase: "", maxUploadBytes: 1 }).sendChat({ message: "hi", model: "claude" }, {}, new AbortController().signal);
    expect(sent!.get("model")).toBe("claude");
  });
});
