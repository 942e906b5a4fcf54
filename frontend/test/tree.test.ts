import { describe, expect, it } from "vitest";
import { branchOf, siblingPlaces } from "../src/tree";
import type { Message } from "../src/types";

let clock = 0;
function msg(id: string, parent: string | null, role: Message["role"] = "user"): Message {
  clock++;
  return {
    id,
    conversation_id: "c",
    parent_id: parent,
    role,
    content: id,
    files: [],
    token_count: 0,
    status: "complete",
    created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, clock)).toISOString(),
  };
}

// q1 ─ a1 ─ q2 ─ a2
//    └ a1b        └ a2b
// q1' ─ a3            (an edit of the first question)
const tree = [
  msg("q1", null),
  msg("a1", "q1", "assistant"),
  msg("q2", "a1"),
  msg("a2", "q2", "assistant"),
  msg("a1b", "q1", "assistant"),
  msg("a2b", "q2", "assistant"),
  msg("q1x", null),
  msg("a3", "q1x", "assistant"),
];

describe("branchOf", () => {
  it("is the path from the first message to the leaf", () => {
    expect(branchOf(tree, "a2b").map((m) => m.id)).toEqual(["q1", "a1", "q2", "a2b"]);
    expect(branchOf(tree, "a3").map((m) => m.id)).toEqual(["q1x", "a3"]);
  });
  it("is empty for an unknown leaf, and ends on a cycle", () => {
    expect(branchOf(tree, "nope")).toEqual([]);
    expect(branchOf(tree, null)).toEqual([]);
    const loop = [msg("x", "y"), msg("y", "x")];
    expect(branchOf(loop, "x").map((m) => m.id)).toEqual(["y", "x"]);
  });
});

describe("siblingPlaces", () => {
  it("numbers the versions of a message in the order they were written", () => {
    const places = siblingPlaces(tree);
    expect(places.get("a1")).toEqual({ index: 1, count: 2, prev: null, next: "a1b" });
    expect(places.get("a1b")).toEqual({ index: 2, count: 2, prev: "a1", next: null });
    expect(places.get("q1x")).toEqual({ index: 2, count: 2, prev: "q1", next: null });
    expect(places.get("q2")).toEqual({ index: 1, count: 1, prev: null, next: null });
  });
});
