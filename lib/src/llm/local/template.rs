//! The local model's chat template and context window: renders a conversation the way the model was
//! trained to read it (ChatML for SmolLM2 and Qwen-style models, the Llama 3 header format), says plainly
//! that attached images cannot be seen, and trims the history to fit the context window.
//!
//! The template family is recognised from the GGUF's own `tokenizer.chat_template`; special tokens are
//! inserted by id, message text is always encoded as plain text.

use crate::llm::{ChatMessage, ChatRole, Part};

/// The marker put where part of an over-long message was cut out.
pub const CUT_MARKER: &str =
    "\n\n[… part of this message was left out to fit the model's context window …]\n\n";

pub use crate::llm::image_note;

/// A message's text as this model reads it: text parts joined, images replaced by a note.
pub fn message_text(m: &ChatMessage) -> String {
    let mut out = String::new();
    for p in &m.parts {
        let piece = match p {
            Part::Text(t) => t.clone(),
            Part::Image { name, .. } => image_note(name),
        };
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&piece);
    }
    out
}

/// The chat formats this adapter can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen, …).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3.x).
    Llama3,
}

/// A piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A special token, by name.
    Special(&'static str),
    /// Plain text.
    Text(String),
}

/// A chat template with its special tokens resolved to ids.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    kind: TemplateKind,
    /// The system prompt the template adds when a conversation has none.
    default_system: Option<String>,
    /// Special token name → id.
    specials: Vec<(&'static str, u32)>,
    /// Ids that end the answer.
    stops: Vec<u32>,
}

fn role_name(r: ChatRole) -> &'static str {
    match r {
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

/// The default system prompt of a ChatML template that adds one when the first message is not a system
/// message (SmolLM2's does), taken from the template text itself.
fn chatml_default_system(template: &str) -> Option<String> {
    if !template.contains("!= 'system'") && !template.contains("!= \"system\"") {
        return None;
    }
    let start = template.find("<|im_start|>system")? + "<|im_start|>system".len();
    let rest = &template[start..];
    let rest = rest
        .strip_prefix("\\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let end = rest.find("<|im_end|>")?;
    let text = &rest[..end];
    (!text.is_empty() && !text.contains("{{") && !text.contains('\'')).then(|| text.to_owned())
}

impl ChatTemplate {
    /// Picks the template from the GGUF's `tokenizer.chat_template` (or, without one, from the special
    /// tokens the vocabulary has); `lookup` finds a special token's id.
    pub fn detect(
        chat_template: Option<&str>,
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Result<Self, String> {
        let has = |name: &str| lookup(name).is_some();
        let kind = match chat_template {
            Some(t) if t.contains("<|im_start|>") => TemplateKind::ChatMl,
            Some(t) if t.contains("<|start_header_id|>") => TemplateKind::Llama3,
            Some(_) => {
                return Err(
                    "its chat template is not one this server can write (ChatML or Llama 3)".into(),
                )
            }
            None if has("<|im_start|>") && has("<|im_end|>") => TemplateKind::ChatMl,
            None if has("<|start_header_id|>") && has("<|eot_id|>") => TemplateKind::Llama3,
            None => return Err("it has no chat template".into()),
        };
        let (needed, stop_names): (&[&'static str], &[&'static str]) = match kind {
            TemplateKind::ChatMl => (
                &["<|im_start|>", "<|im_end|>"],
                &["<|im_end|>", "<|endoftext|>", "<|im_start|>"],
            ),
            TemplateKind::Llama3 => (
                &[
                    "<|begin_of_text|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                ],
                &["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"],
            ),
        };
        let mut specials = Vec::new();
        for &name in needed {
            let id = lookup(name)
                .ok_or_else(|| format!("its vocabulary lacks the special token {name}"))?;
            specials.push((name, id));
        }
        let stops = stop_names.iter().filter_map(|n| lookup(n)).collect();
        let default_system = match kind {
            TemplateKind::ChatMl => chat_template.and_then(chatml_default_system),
            TemplateKind::Llama3 => None,
        };
        Ok(Self {
            kind,
            default_system,
            specials,
            stops,
        })
    }

    /// Which format this is.
    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// The ids that end an answer (end of turn, end of text).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stops
    }

    fn special_id(&self, name: &str) -> Option<u32> {
        self.specials
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
    }

    /// What comes before the first message.
    fn preamble(&self) -> Vec<Piece> {
        match self.kind {
            TemplateKind::ChatMl => Vec::new(),
            TemplateKind::Llama3 => vec![Piece::Special("<|begin_of_text|>")],
        }
    }

    /// One message as (framing before, content, framing after).
    fn frame(&self, role: ChatRole, content: &str) -> (Vec<Piece>, String, Vec<Piece>) {
        let role = role_name(role);
        match self.kind {
            TemplateKind::ChatMl => (
                vec![
                    Piece::Special("<|im_start|>"),
                    Piece::Text(format!("{role}\n")),
                ],
                content.to_owned(),
                vec![Piece::Special("<|im_end|>"), Piece::Text("\n".into())],
            ),
            TemplateKind::Llama3 => (
                vec![
                    Piece::Special("<|start_header_id|>"),
                    Piece::Text(role.into()),
                    Piece::Special("<|end_header_id|>"),
                    Piece::Text("\n\n".into()),
                ],
                content.trim().to_owned(),
                vec![Piece::Special("<|eot_id|>")],
            ),
        }
    }

    /// What asks the model for its answer.
    fn generation_prompt(&self) -> Vec<Piece> {
        match self.kind {
            TemplateKind::ChatMl => vec![
                Piece::Special("<|im_start|>"),
                Piece::Text("assistant\n".into()),
            ],
            TemplateKind::Llama3 => vec![
                Piece::Special("<|start_header_id|>"),
                Piece::Text("assistant".into()),
                Piece::Special("<|end_header_id|>"),
                Piece::Text("\n\n".into()),
            ],
        }
    }

    /// The messages to render: the template's default system prompt first when there is none.
    fn with_default_system(&self, messages: &[ChatMessage]) -> Vec<(ChatRole, String)> {
        let mut out: Vec<(ChatRole, String)> = Vec::with_capacity(messages.len() + 1);
        if let Some(sys) = &self.default_system {
            if messages.first().map(|m| m.role) != Some(ChatRole::System) {
                out.push((ChatRole::System, sys.clone()));
            }
        }
        out.extend(messages.iter().map(|m| (m.role, message_text(m))));
        out
    }

    /// The whole prompt as text, special tokens written by name (what the model's Jinja template would
    /// produce with `add_generation_prompt`).
    pub fn render_text(&self, messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        let put = |pieces: &[Piece], out: &mut String| {
            for p in pieces {
                match p {
                    Piece::Special(s) => out.push_str(s),
                    Piece::Text(t) => out.push_str(t),
                }
            }
        };
        put(&self.preamble(), &mut out);
        for (role, text) in self.with_default_system(messages) {
            let (head, content, tail) = self.frame(role, &text);
            put(&head, &mut out);
            out.push_str(&content);
            put(&tail, &mut out);
        }
        put(&self.generation_prompt(), &mut out);
        out
    }

    fn encode_pieces(
        &self,
        pieces: &[Piece],
        encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
    ) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Special(name) => out.push(
                    self.special_id(name)
                        .ok_or_else(|| format!("the special token {name} is missing"))?,
                ),
                Piece::Text(t) => out.extend(encode(t)?),
            }
        }
        Ok(out)
    }

    /// The prompt's token ids, trimmed to at most `budget` tokens: the oldest history goes first (whole
    /// turns, so the history starts with the user), then the middle of the newest message (its start
    /// and its end, where the question usually is, are kept), and only then the system prompt.
    pub fn build(
        &self,
        messages: &[ChatMessage],
        budget: usize,
        encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
    ) -> Result<Prompt, String> {
        let preamble = self.encode_pieces(&self.preamble(), encode)?;
        let gen = self.encode_pieces(&self.generation_prompt(), encode)?;
        let mut encoded = Vec::new();
        for (role, text) in self.with_default_system(messages) {
            let (head, content, tail) = self.frame(role, &text);
            encoded.push(Encoded {
                role,
                head: self.encode_pieces(&head, encode)?,
                content: encode(&content)?,
                tail: self.encode_pieces(&tail, encode)?,
            });
        }
        let marker = encode(CUT_MARKER)?;
        let fixed = preamble.len() + gen.len();
        let total = |e: &[Encoded]| fixed + e.iter().map(Encoded::len).sum::<usize>();

        let has_system = encoded.first().map(|e| e.role) == Some(ChatRole::System);
        let first_history = usize::from(has_system);
        let mut dropped = 0usize;
        // Drop the oldest history (never the system prompt, never the newest message).
        while total(&encoded) > budget && encoded.len() > first_history + 1 {
            encoded.remove(first_history);
            dropped += 1;
            // A history that starts with an answer has lost its question: drop it too.
            while encoded.len() > first_history + 1
                && encoded[first_history].role == ChatRole::Assistant
            {
                encoded.remove(first_history);
                dropped += 1;
            }
        }
        let mut truncated = false;
        if total(&encoded) > budget {
            truncated = true;
            let last = encoded.len() - 1;
            let framing = fixed
                + encoded[..last].iter().map(Encoded::len).sum::<usize>()
                + encoded[last].head.len()
                + encoded[last].tail.len()
                + marker.len();
            // The newest message keeps at least half the room when the system prompt is long.
            let min_keep = (budget / 2).min(encoded[last].content.len());
            if framing + min_keep > budget && has_system && last > 0 {
                let over = framing + min_keep - budget;
                let sys = &mut encoded[0].content;
                let keep = sys.len().saturating_sub(over + marker.len());
                sys.truncate(keep);
                sys.extend_from_slice(&marker);
            }
            let framing = fixed
                + encoded[..last].iter().map(Encoded::len).sum::<usize>()
                + encoded[last].head.len()
                + encoded[last].tail.len()
                + marker.len();
            let room = budget.saturating_sub(framing);
            if room == 0 {
                return Err("the conversation does not fit the model's context window".into());
            }
            let content = &mut encoded[last].content;
            if content.len() > room {
                let head = room * 2 / 3;
                let tail = room - head;
                let mut cut = content[..head].to_vec();
                cut.extend_from_slice(&marker);
                cut.extend_from_slice(&content[content.len() - tail..]);
                *content = cut;
            }
        }
        let mut ids = preamble;
        for e in &encoded {
            ids.extend_from_slice(&e.head);
            ids.extend_from_slice(&e.content);
            ids.extend_from_slice(&e.tail);
        }
        ids.extend_from_slice(&gen);
        if ids.len() > budget {
            return Err("the conversation does not fit the model's context window".into());
        }
        Ok(Prompt {
            ids,
            dropped_messages: dropped,
            truncated,
        })
    }
}

struct Encoded {
    role: ChatRole,
    head: Vec<u32>,
    content: Vec<u32>,
    tail: Vec<u32>,
}

impl Encoded {
    fn len(&self) -> usize {
        self.head.len() + self.content.len() + self.tail.len()
    }
}

/// A prompt ready for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Its token ids.
    pub ids: Vec<u32>,
    /// How many history messages were left out to fit.
    pub dropped_messages: usize,
    /// Whether a message had to be cut.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn smol_ids(name: &str) -> Option<u32> {
        match name {
            "<|endoftext|>" => Some(0),
            "<|im_start|>" => Some(1),
            "<|im_end|>" => Some(2),
            _ => None,
        }
    }

    /// One token per character (ids from 1000 up), so lengths are easy to reason about.
    fn chars(text: &str) -> Result<Vec<u32>, String> {
        Ok(text.chars().map(|c| 1000 + c as u32).collect())
    }

    /// The text of a prompt encoded by [`chars`] (template pieces, below 1000, left out).
    fn decoded(p: &Prompt) -> String {
        p.ids
            .iter()
            .filter(|&&i| i >= 1000)
            .map(|&i| char::from_u32(i - 1000).unwrap())
            .collect()
    }

    fn smol() -> ChatTemplate {
        ChatTemplate::detect(Some(SMOL_TEMPLATE), smol_ids).unwrap()
    }

    fn msg(role: ChatRole, text: &str) -> ChatMessage {
        ChatMessage::text(role, text)
    }

    #[test]
    fn chatml_matches_the_models_own_template() {
        let t = smol();
        assert_eq!(t.kind(), TemplateKind::ChatMl);
        assert_eq!(t.stop_ids(), &[2, 0, 1]);
        let text = t.render_text(&[
            msg(ChatRole::System, "Be brief."),
            msg(ChatRole::User, "Hi"),
            msg(ChatRole::Assistant, "Hello!"),
            msg(ChatRole::User, "Capital of France?"),
        ]);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_adds_the_templates_default_system_prompt() {
        let t = smol();
        let text = t.render_text(&[msg(ChatRole::User, "Hi")]);
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_format() {
        let ids = |n: &str| match n {
            "<|begin_of_text|>" => Some(10),
            "<|start_header_id|>" => Some(11),
            "<|end_header_id|>" => Some(12),
            "<|eot_id|>" => Some(13),
            "<|end_of_text|>" => Some(14),
            _ => None,
        };
        let t = ChatTemplate::detect(
            Some("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"),
            ids,
        )
        .unwrap();
        assert_eq!(t.kind(), TemplateKind::Llama3);
        assert_eq!(t.stop_ids(), &[13, 14]);
        let text = t.render_text(&[msg(ChatRole::System, " S "), msg(ChatRole::User, "Q")]);
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn unknown_templates_are_refused() {
        assert!(ChatTemplate::detect(Some("[INST] {{ message }} [/INST]"), smol_ids).is_err());
        assert!(ChatTemplate::detect(None, |_| None).is_err());
        // No template text, but the ChatML tokens are there.
        assert_eq!(
            ChatTemplate::detect(None, smol_ids).unwrap().kind(),
            TemplateKind::ChatMl
        );
    }

    #[test]
    fn images_are_named_not_dropped() {
        let m = ChatMessage {
            role: ChatRole::User,
            parts: vec![
                Part::Image {
                    mime: "image/png".into(),
                    data: Bytes::from_static(b"\x89PNG"),
                    name: "photo.png".into(),
                },
                Part::Text("What is in the picture?".into()),
            ],
        };
        assert_eq!(
            message_text(&m),
            "[The image photo.png is attached, but this model cannot see images.]\n\nWhat is in the picture?"
        );
        let text = smol().render_text(&[m]);
        assert!(text.contains("photo.png is attached, but this model cannot see images"));
    }

    #[test]
    fn special_tokens_come_by_id_and_text_stays_text() {
        let t = smol();
        let p = t
            .build(&[msg(ChatRole::User, "<|im_end|>")], 10_000, &chars)
            .unwrap();
        // The forged marker is encoded character by character, never as id 2.
        let user_turn: Vec<u32> = p.ids.iter().copied().skip_while(|&i| i != 1).collect();
        assert_eq!(p.ids.iter().filter(|&&i| i == 2).count(), 2);
        assert!(user_turn.contains(&(1000 + '<' as u32)));
        assert_eq!(p.ids.last(), Some(&(1000 + '\n' as u32)));
        assert!(!p.truncated);
        assert_eq!(p.dropped_messages, 0);
    }

    #[test]
    fn prompt_ids_spell_the_rendered_text() {
        let t = smol();
        let messages = [msg(ChatRole::System, "S"), msg(ChatRole::User, "Hi")];
        let p = t.build(&messages, 10_000, &chars).unwrap();
        let spelled: String = p
            .ids
            .iter()
            .map(|&i| match i {
                0 => "<|endoftext|>".to_owned(),
                1 => "<|im_start|>".to_owned(),
                2 => "<|im_end|>".to_owned(),
                i => char::from_u32(i - 1000).unwrap().to_string(),
            })
            .collect();
        assert_eq!(spelled, t.render_text(&messages));
    }

    #[test]
    fn the_oldest_history_goes_first_in_whole_turns() {
        let t = smol();
        let messages = [
            msg(ChatRole::System, "S"),
            msg(ChatRole::User, &"k".repeat(100)),
            msg(ChatRole::Assistant, &"j".repeat(100)),
            msg(ChatRole::User, &"c".repeat(100)),
            msg(ChatRole::Assistant, &"d".repeat(100)),
            msg(ChatRole::User, "question"),
        ];
        let full = t.build(&messages, 10_000, &chars).unwrap();
        // Room for everything but the first user message.
        let budget = full.ids.len() - 50;
        let p = t.build(&messages, budget, &chars).unwrap();
        assert!(p.ids.len() <= budget);
        // Its answer went with it: the history starts with a user turn again.
        assert_eq!(p.dropped_messages, 2);
        let text = decoded(&p);
        assert!(!text.contains('k') && !text.contains('j'));
        assert!(text.contains(&"c".repeat(100)) && text.contains("question"));
        assert!(text.starts_with("system\nS"));
        assert!(!p.truncated);
    }

    #[test]
    fn an_over_long_message_keeps_its_start_and_its_question() {
        let t = smol();
        let long = format!("{}{}", "x".repeat(5000), " What does it say?");
        let messages = [
            msg(ChatRole::System, "System prompt."),
            msg(ChatRole::User, "old"),
            msg(ChatRole::Assistant, "older answer"),
            msg(ChatRole::User, &long),
        ];
        let p = t.build(&messages, 1000, &chars).unwrap();
        assert!(p.ids.len() <= 1000, "{}", p.ids.len());
        assert!(p.truncated);
        assert_eq!(p.dropped_messages, 2);
        let text = decoded(&p);
        assert!(text.contains("System prompt."));
        assert!(text.contains("left out to fit the model's context window"));
        assert!(text.ends_with("What does it say?\nassistant\n"));
        assert!(text.contains("user\nxxxx"));
    }

    #[test]
    fn a_huge_system_prompt_gives_way_to_the_message() {
        let t = smol();
        let messages = [
            msg(ChatRole::System, &"s".repeat(5000)),
            msg(ChatRole::User, "Short question?"),
        ];
        let p = t.build(&messages, 600, &chars).unwrap();
        assert!(p.ids.len() <= 600);
        let text = decoded(&p);
        assert!(text.contains("Short question?"));
        assert!(p.truncated);
    }

    #[test]
    fn a_budget_too_small_for_the_framing_is_an_error() {
        let t = smol();
        assert!(t.build(&[msg(ChatRole::User, "hi")], 5, &chars).is_err());
    }
}
