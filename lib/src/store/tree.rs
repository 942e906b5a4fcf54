//! Message trees, shared by the store adapters and the services: the branch that ends at a leaf,
//! the latest leaf under a message, and the parents of a history written before messages had any.
//!
//! A child is always written after its parent, so a walk from a leaf meets its ancestors in
//! newest-first order: [`Walk`] takes messages in that order, page by page, and stops as soon as it
//! has the branch (or enough of it). Messages it meets out of order (two instances' clocks a few
//! milliseconds apart) are kept aside until their turn comes.

use std::collections::HashMap;

use crate::domain::{Message, MessageId};

/// A walk from a leaf up to the first message, fed messages newest first.
#[derive(Debug)]
pub struct Walk {
    want: Option<MessageId>,
    limit: usize,
    path: Vec<Message>,
    aside: HashMap<MessageId, Message>,
}

impl Walk {
    /// A walk up from `leaf`, keeping at most `limit` messages (`None`: every one).
    pub fn new(leaf: &MessageId, limit: Option<u32>) -> Self {
        Self {
            want: Some(leaf.clone()),
            limit: limit.map_or(usize::MAX, |l| l as usize),
            path: Vec::new(),
            aside: HashMap::new(),
        }
    }

    /// Whether the walk has what it needs: the first message, or `limit` messages.
    pub fn done(&self) -> bool {
        self.want.is_none() || self.path.len() >= self.limit
    }

    /// Takes the next message (newest first); returns [`Walk::done`].
    pub fn feed(&mut self, m: Message) -> bool {
        if self.done() {
            return true;
        }
        if self.want.as_ref() == Some(&m.id) {
            self.step(m);
        } else {
            self.aside.insert(m.id.clone(), m);
        }
        while let Some(next) = self.want.as_ref().and_then(|w| self.aside.remove(w)) {
            if self.done() {
                break;
            }
            self.step(next);
        }
        self.done()
    }

    fn step(&mut self, m: Message) {
        self.want = m.parent_id.clone();
        self.path.push(m);
    }

    /// The branch found, oldest first (empty when the leaf never came).
    pub fn finish(mut self) -> Vec<Message> {
        self.path.reverse();
        self.path
    }
}

/// The branch of `messages` (any order) that ends at `leaf`, oldest first, at most its last
/// `limit` messages.
pub fn branch(mut messages: Vec<Message>, leaf: &MessageId, limit: Option<u32>) -> Vec<Message> {
    messages.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
    let mut walk = Walk::new(leaf, limit);
    for m in messages {
        if walk.feed(m) {
            break;
        }
    }
    walk.finish()
}

/// The leaf reached from `from` by following, at each step, its most recently created child: the
/// leaf of the branch through `from` that was written last.
pub fn latest_leaf(messages: &[Message], from: &MessageId) -> MessageId {
    let mut newest_child: HashMap<&MessageId, &Message> = HashMap::new();
    for m in messages {
        if let Some(parent) = &m.parent_id {
            let newer = newest_child
                .get(parent)
                .is_none_or(|c| (m.created_at, m.id.as_str()) > (c.created_at, c.id.as_str()));
            if newer {
                newest_child.insert(parent, m);
            }
        }
    }
    let mut at = from;
    // A tree has no cycles; a corrupt one cannot hold the walk for more steps than messages.
    for _ in 0..=messages.len() {
        match newest_child.get(at) {
            Some(child) => at = &child.id,
            None => break,
        }
    }
    at.clone()
}

/// Gives each message of a history written before messages had parents (every message oldest
/// first, in `(created_at, id)` order) the one before it as its parent: a linear history becomes a
/// single branch.
pub fn link_linear(messages: &mut [Message]) {
    let mut previous: Option<MessageId> = None;
    for m in messages {
        m.parent_id = previous.replace(m.id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, MessageStatus, Role, Timestamp};

    fn m(id: &str, parent: Option<&str>, at: i64) -> Message {
        Message {
            id: id.into(),
            conversation_id: ConversationId::from("c"),
            parent_id: parent.map(MessageId::from),
            role: Role::User,
            content: id.into(),
            files: vec![],
            token_count: 1,
            status: MessageStatus::Complete,
            created_at: Timestamp::from_millis(at),
            usage: None,
            citations: vec![],
        }
    }

    fn ids(ms: &[Message]) -> Vec<&str> {
        ms.iter().map(|m| m.id.as_str()).collect()
    }

    /// u1 → a1 → u2 → a2, with a1' (regenerated) and u2' (an edit) beside them.
    fn tree() -> Vec<Message> {
        vec![
            m("u1", None, 1),
            m("a1", Some("u1"), 2),
            m("u2", Some("a1"), 3),
            m("a2", Some("u2"), 4),
            m("a1b", Some("u1"), 5),
            m("u2b", Some("a1"), 6),
        ]
    }

    #[test]
    fn a_branch_is_the_path_from_the_first_message_to_its_leaf() {
        assert_eq!(
            ids(&branch(tree(), &"a2".into(), None)),
            ["u1", "a1", "u2", "a2"]
        );
        assert_eq!(ids(&branch(tree(), &"a1b".into(), None)), ["u1", "a1b"]);
        assert_eq!(ids(&branch(tree(), &"u2b".into(), Some(2))), ["a1", "u2b"]);
        assert!(branch(tree(), &"nope".into(), None).is_empty());
    }

    #[test]
    fn a_parent_met_before_its_child_is_kept_aside() {
        // Clocks a few milliseconds apart: the parent looks newer than its child.
        let ms = vec![
            m("u1", None, 1),
            m("a1", Some("u1"), 9),
            m("u2", Some("a1"), 5),
        ];
        assert_eq!(ids(&branch(ms, &"u2".into(), None)), ["u1", "a1", "u2"]);
    }

    #[test]
    fn the_latest_leaf_follows_the_newest_child() {
        let t = tree();
        // u1's newest child is the regenerated a1b; a1's is the edit u2b.
        assert_eq!(latest_leaf(&t, &"u1".into()), "a1b".into());
        assert_eq!(latest_leaf(&t, &"a1".into()), "u2b".into());
        assert_eq!(latest_leaf(&t, &"u2".into()), "a2".into());
        assert_eq!(latest_leaf(&t, &"a1b".into()), "a1b".into());
    }

    #[test]
    fn a_linear_history_becomes_one_branch() {
        let mut ms = vec![m("x", None, 1), m("y", None, 2), m("z", None, 3)];
        link_linear(&mut ms);
        let parents: Vec<Option<&str>> = ms
            .iter()
            .map(|m| m.parent_id.as_ref().map(MessageId::as_str))
            .collect();
        assert_eq!(parents, [None, Some("x"), Some("y")]);
    }
}
