//! Tokenizer, chat templates and streaming text output.
//!
//! - [`Tokenizer`] wraps a Hugging Face `tokenizer.json` (the `tokenizers` crate) and reads the
//!   special tokens and chat template from `tokenizer_config.json` (or `chat_template.jinja`) and
//!   the end-of-sequence ids from `generation_config.json` / `config.json`.
//! - Chat templates are not run through a Jinja engine: [`ChatFormat::detect`] recognises the
//!   template family from its text (ChatML with or without a default system prompt, Llama 3,
//!   Llama 3.1/3.2) and [`Tokenizer::apply_chat`] renders it natively. The output is checked
//!   byte for byte against transformers' own rendering (tests/fixtures/chat/goldens.json).
//! - [`TextStream`] turns generated ids into text one token at a time without ever emitting a
//!   half character; [`StopMatcher`] holds back text that may be the start of a stop string.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// One chat turn: `role` is usually "system", "user" or "assistant".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Where the Llama 3.1/3.2 system block's "Today Date" comes from when the caller gives none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatDate {
    /// The template's fixed fallback (Llama 3.1: "26 Jul 2024").
    Fixed(String),
    /// The template calls `strftime_now("%d %b %Y")` (Llama 3.2): today's UTC date.
    Today,
}

/// A chat-template family this runtime renders natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` per message, generation prompt
    /// `<|im_start|>assistant\n` (SmolLM2, Qwen2, many fine-tunes).
    ChatMl {
        /// Inserted as a system message when the first message is not "system"
        /// (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        /// Qwen2: "You are a helpful assistant.").
        default_system: Option<String>,
        /// true when the default is emitted inside the message loop (`loop.first`), so an
        /// empty conversation gets none; false when it is emitted before the loop (Qwen2.5).
        default_in_loop: bool,
    },
    /// Llama 3 Instruct: `bos` + `<|start_header_id|>role<|end_header_id|>\n\n` +
    /// content (whitespace-trimmed when `trim`) + `<|eot_id|>`.
    Llama3 { bos: String, trim: bool },
    /// Llama 3.1 / 3.2 Instruct: like Llama 3, but always opens with a system block holding
    /// "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n" and the (trimmed) first
    /// system message, if any.
    Llama31 { bos: String, date: ChatDate },
}

const NO_TEMPLATE: &str =
    "no chat_template (looked in tokenizer_config.json and chat_template.jinja); \
     this model has no chat format, use plain prompts";

impl ChatFormat {
    /// Recognise the template family from the Jinja text. `bos_token` is the string the
    /// template's `bos_token` variable holds. Returns a one-line reason when unrecognised.
    pub fn detect(template: &str, bos_token: &str) -> std::result::Result<ChatFormat, String> {
        let has = |s: &str| template.contains(s);
        if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") {
            let bos = if has("bos_token") {
                bos_token.to_string()
            } else if has("<|begin_of_text|>") {
                "<|begin_of_text|>".to_string()
            } else {
                String::new()
            };
            if has("Cutting Knowledge Date") {
                let date = if has("strftime_now") {
                    ChatDate::Today
                } else {
                    ChatDate::Fixed(
                        quoted_after(template, "set date_string")
                            .unwrap_or_else(|| "26 Jul 2024".to_string()),
                    )
                };
                return Ok(ChatFormat::Llama31 { bos, date });
            }
            let trim = template.contains("| trim") || template.contains("|trim");
            return Ok(ChatFormat::Llama3 { bos, trim });
        }
        if has("<|im_start|>") && has("<|im_end|>") {
            let default_system = chatml_default_system(template);
            let default_in_loop = default_system.is_some() && has("loop.first");
            return Ok(ChatFormat::ChatMl {
                default_system,
                default_in_loop,
            });
        }
        let head: String = template.chars().take(60).collect();
        Err(format!(
            "chat template family not recognised (supported: ChatML, Llama 3, Llama 3.1/3.2); \
             template starts {head:?}"
        ))
    }
}

/// The first string literal ('…' or "…") after `key`, e.g. `set date_string = "26 Jul 2024"`.
fn quoted_after(template: &str, key: &str) -> Option<String> {
    let rest = &template[template.find(key)? + key.len()..];
    let start = rest.find(['"', '\''])?;
    let q = rest[start..].chars().next()?;
    let body = &rest[start + 1..];
    let end = body.find(q)?;
    Some(body[..end].to_string())
}

/// The literal default system prompt of a ChatML template: the text between
/// `<|im_start|>system` + newline (raw or the Jinja escape `\n`) and `<|im_end|>` inside one
/// string literal, i.e. containing no quote, `+` or braces (which would mean the content is an
/// expression such as `messages[0]['content']`).
fn chatml_default_system(template: &str) -> Option<String> {
    const OPEN: &str = "<|im_start|>system";
    let mut from = 0;
    while let Some(i) = template[from..].find(OPEN) {
        let after = &template[from + i + OPEN.len()..];
        from += i + OPEN.len();
        let body = if let Some(b) = after.strip_prefix("\\n") {
            b
        } else if let Some(b) = after.strip_prefix('\n') {
            b
        } else {
            continue;
        };
        let Some(end) = body.find("<|im_end|>") else {
            continue;
        };
        let text = &body[..end];
        if text.is_empty() || text.contains(['\'', '"', '+', '{', '}']) {
            continue;
        }
        return Some(unescape_jinja(text));
    }
    None
}

/// The escapes a Jinja string literal may use in plain text.
fn unescape_jinja(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// Jinja's `trim` filter is Python's `str.strip()`: Unicode whitespace plus the
/// information separators U+001C..U+001F.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Today's UTC date as `strftime("%d %b %Y")`, e.g. "05 Mar 2025".
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{d:02} {} {y}", MONTHS[(m - 1) as usize])
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A Hugging Face tokenizer plus the special-token and chat metadata of a model folder.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// tokenizer.json, named in encode/decode errors.
    path: PathBuf,
    /// tokenizer_config.json (named in chat-template errors even when absent).
    config_path: PathBuf,
    vocab_size: usize,
    bos_id: Option<u32>,
    bos_token: Option<String>,
    eos_ids: Vec<u32>,
    add_bos_token: bool,
    chat_template: Option<String>,
    chat: std::result::Result<ChatFormat, String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("chat", &self.chat)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::json(path, e))
}

/// A special token in tokenizer_config.json: a string, `{"content": "..."}` (AddedToken) or null.
fn special_token(cfg: &Value, key: &str, path: &Path) -> Result<Option<String>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Error::config(
                path,
                format!("{key}: expected a string or an object with a string \"content\""),
            )),
        },
        Some(v) => Err(Error::config(
            path,
            format!("{key}: expected a string, an AddedToken object or null, found {v}"),
        )),
    }
}

/// A token id field that may be an integer, a list of integers or null.
fn id_list(v: &Value, key: &str, path: &Path, vocab: usize) -> Result<Vec<u32>> {
    let one = |x: &Value| -> Result<u32> {
        x.as_u64()
            .filter(|&i| (i as usize) < vocab)
            .map(|i| i as u32)
            .ok_or_else(|| {
                Error::config(
                    path,
                    format!(
                        "{key}: expected token ids below the vocabulary size {vocab}, found {x}"
                    ),
                )
            })
    };
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(x) => Ok(vec![one(x)?]),
    }
}

impl Tokenizer {
    /// Load `tokenizer.json` from a model folder, with `tokenizer_config.json`,
    /// `chat_template.jinja`, `generation_config.json` and `config.json` when present.
    ///
    /// End-of-sequence ids are the union, in this order and without repeats, of
    /// generation_config.json `eos_token_id`, config.json `eos_token_id` (each an int or a
    /// list) and tokenizer_config.json `eos_token`. The BOS id is tokenizer_config.json
    /// `bos_token`, else `bos_token_id` from generation_config.json, else config.json.
    ///
    /// An unrecognised chat template is not an error here (plain prompts still work); it is
    /// reported by [`Tokenizer::apply_chat`].
    pub fn from_dir(model_dir: &Path) -> Result<Tokenizer> {
        let path = model_dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::format(&path, format!("not a valid tokenizer.json: {e}")))?;
        let vocab_size = inner.get_vocab_size(true);
        if vocab_size == 0 {
            return Err(Error::format(&path, "the vocabulary is empty"));
        }
        let lookup = |tok: &str, key: &str, cfg_path: &Path| -> Result<u32> {
            inner.token_to_id(tok).ok_or_else(|| {
                Error::config(
                    cfg_path,
                    format!("{key} {tok:?} is not a token of {}", path.display()),
                )
            })
        };

        let config_path = model_dir.join("tokenizer_config.json");
        let tcfg = read_json(&config_path)?.unwrap_or(Value::Null);
        if !tcfg.is_null() && !tcfg.is_object() {
            return Err(Error::config(&config_path, "expected a JSON object"));
        }
        let bos_token = special_token(&tcfg, "bos_token", &config_path)?;
        let eos_token = special_token(&tcfg, "eos_token", &config_path)?;
        let add_bos_token = match tcfg.get("add_bos_token") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(Error::config(
                    &config_path,
                    format!("add_bos_token: expected true or false, found {v}"),
                ))
            }
        };
        let mut chat_template = match tcfg.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
            Some(Value::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .or_else(|| list.first());
                match pick.and_then(|t| t.get("template")).and_then(Value::as_str) {
                    Some(s) => Some(s.to_string()),
                    None => {
                        return Err(Error::config(
                            &config_path,
                            "chat_template: expected a string or a list of {name, template}",
                        ))
                    }
                }
            }
            Some(_) => {
                return Err(Error::config(
                    &config_path,
                    "chat_template: expected a string or a list of {name, template}",
                ))
            }
        };
        if chat_template.is_none() {
            let jinja = model_dir.join("chat_template.jinja");
            match std::fs::read_to_string(&jinja) {
                Ok(s) => chat_template = Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&jinja, e)),
            }
        }

        let gen_path = model_dir.join("generation_config.json");
        let gcfg = read_json(&gen_path)?.unwrap_or(Value::Null);
        let cfg_path = model_dir.join("config.json");
        let mcfg = read_json(&cfg_path)?.unwrap_or(Value::Null);

        let mut eos_ids: Vec<u32> = Vec::new();
        let mut push = |v: Vec<u32>| {
            for id in v {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        };
        push(id_list(&gcfg, "eos_token_id", &gen_path, vocab_size)?);
        push(id_list(&mcfg, "eos_token_id", &cfg_path, vocab_size)?);
        if let Some(t) = &eos_token {
            push(vec![lookup(t, "eos_token", &config_path)?]);
        }

        let bos_id = match &bos_token {
            Some(t) => Some(lookup(t, "bos_token", &config_path)?),
            None => {
                let g = id_list(&gcfg, "bos_token_id", &gen_path, vocab_size)?;
                let g = if g.is_empty() {
                    id_list(&mcfg, "bos_token_id", &cfg_path, vocab_size)?
                } else {
                    g
                };
                g.first().copied()
            }
        };
        let bos_token = bos_token.or_else(|| bos_id.and_then(|i| inner.id_to_token(i)));

        let chat = match &chat_template {
            Some(t) => ChatFormat::detect(t, bos_token.as_deref().unwrap_or("")),
            None => Err(NO_TEMPLATE.to_string()),
        };

        Ok(Tokenizer {
            inner,
            path,
            config_path,
            vocab_size,
            bos_id,
            bos_token,
            eos_ids,
            add_bos_token,
            chat_template,
            chat,
        })
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer.json post-processor runs
    /// (e.g. Llama 3 prepends `<|begin_of_text|>`), and when tokenizer_config.json says
    /// `add_bos_token: true` the BOS id is prepended unless already first. Special-token text
    /// in `text` (e.g. `<|im_start|>`) always becomes its special id, as in transformers.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::format(&self.path, format!("encoding failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens && self.add_bos_token {
            if let Some(b) = self.bos_id {
                if ids.first() != Some(&b) {
                    ids.insert(0, b);
                }
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; `skip_special` drops special tokens (e.g. `<|im_end|>`). Ids at or above
    /// [`Tokenizer::vocab_size`] are an `InvalidArgument` error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {} ({} tokens)",
                self.path.display(),
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::format(&self.path, format!("decoding failed: {e}")))
    }

    /// Ids that end generation (see [`Tokenizer::from_dir`]); may be empty.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The BOS token's text (what a chat template's `bos_token` holds).
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// tokenizer_config.json `add_bos_token` (false when absent).
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The raw Jinja chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The recognised chat format, or `Err(reason)`.
    pub fn chat_format(&self) -> std::result::Result<&ChatFormat, &str> {
        self.chat.as_ref().map_err(|s| s.as_str())
    }

    /// The prompt text for `messages`, as transformers' `apply_chat_template(tokenize=False)`
    /// renders it. Encode the result with `add_special_tokens = false` (the template already
    /// holds BOS where the model wants it). Llama 3.1 templates get their own date fallback
    /// ("26 Jul 2024"), Llama 3.2 ones today's UTC date.
    pub fn apply_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_chat(messages, add_generation_prompt, None)
    }

    /// [`Tokenizer::apply_chat`] with the template variable `date_string` set (Llama 3.1/3.2:
    /// "Today Date: {date_string}"); other formats ignore it.
    pub fn apply_chat_with_date(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        date_string: &str,
    ) -> Result<String> {
        self.render_chat(messages, add_generation_prompt, Some(date_string))
    }

    fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        date_string: Option<&str>,
    ) -> Result<String> {
        let format = self
            .chat
            .as_ref()
            .map_err(|why| Error::unsupported(&self.config_path, why.clone()))?;
        render(format, messages, add_generation_prompt, date_string)
    }
}

/// Render `messages` in `format` (what [`Tokenizer::apply_chat`] does once the format is known).
pub fn render(
    format: &ChatFormat,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    date_string: Option<&str>,
) -> Result<String> {
    let cap = messages
        .iter()
        .map(|m| m.role.len() + m.content.len() + 32)
        .sum::<usize>()
        + 256;
    let mut out = String::with_capacity(cap);
    match format {
        ChatFormat::ChatMl {
            default_system,
            default_in_loop,
        } => {
            let first_is_system = messages.first().is_some_and(|m| m.role == "system");
            if let Some(sys) = default_system {
                if !first_is_system && (!default_in_loop || !messages.is_empty()) {
                    out.push_str("<|im_start|>system\n");
                    out.push_str(sys);
                    out.push_str("<|im_end|>\n");
                }
            }
            for m in messages {
                out.push_str("<|im_start|>");
                out.push_str(&m.role);
                out.push('\n');
                out.push_str(&m.content);
                out.push_str("<|im_end|>\n");
            }
            if add_generation_prompt {
                out.push_str("<|im_start|>assistant\n");
            }
        }
        ChatFormat::Llama3 { bos, trim } => {
            for (i, m) in messages.iter().enumerate() {
                if i == 0 {
                    out.push_str(bos);
                }
                llama3_turn(&mut out, &m.role, &m.content, *trim);
            }
            if add_generation_prompt {
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
        }
        ChatFormat::Llama31 { bos, date } => {
            // The template reads messages[0] unconditionally and raises on an empty list.
            let Some(first) = messages.first() else {
                return Err(Error::InvalidArgument(
                    "this chat template (Llama 3.1/3.2) needs at least one message".into(),
                ));
            };
            let (system, rest) = if first.role == "system" {
                (py_strip(&first.content), &messages[1..])
            } else {
                ("", messages)
            };
            let today;
            let date = match (date_string, date) {
                (Some(d), _) => d,
                (None, ChatDate::Fixed(d)) => d.as_str(),
                (None, ChatDate::Today) => {
                    today = today_utc();
                    today.as_str()
                }
            };
            out.push_str(bos);
            out.push_str("<|start_header_id|>system<|end_header_id|>\n\n");
            out.push_str("Cutting Knowledge Date: December 2023\nToday Date: ");
            out.push_str(date);
            out.push_str("\n\n");
            out.push_str(system);
            out.push_str("<|eot_id|>");
            for m in rest {
                llama3_turn(&mut out, &m.role, &m.content, true);
            }
            if add_generation_prompt {
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
        }
    }
    Ok(out)
}

fn llama3_turn(out: &mut String, role: &str, content: &str, trim: bool) {
    out.push_str("<|start_header_id|>");
    out.push_str(role);
    out.push_str("<|end_header_id|>\n\n");
    out.push_str(if trim { py_strip(content) } else { content });
    out.push_str("<|eot_id|>");
}

/// Incremental detokenisation: feed generated ids one at a time, get back the text that is
/// now complete. Byte-level BPE tokens can split a multi-byte character; such a tail decodes
/// to U+FFFD and is held back until the next token completes it.
///
/// Decodes only a short window (the ids since the last emitted text plus the tokens before
/// them, as context for decoders that treat the first token specially), so the cost per
/// token does not grow with the length of the output.
#[derive(Debug, Clone)]
pub struct TextStream {
    ids: Vec<u32>,
    /// ids[prefix..read] were already emitted and are decoded again only as context.
    prefix: usize,
    read: usize,
    skip_special: bool,
}

impl TextStream {
    pub fn new(skip_special: bool) -> Self {
        TextStream {
            ids: Vec::new(),
            prefix: 0,
            read: 0,
            skip_special,
        }
    }

    /// Add one id; returns the newly completed text (often empty). An id outside the
    /// vocabulary is an error and is not added.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let r = self.advance(tok);
        if r.is_err() {
            self.ids.pop();
        }
        r
    }

    fn advance(&mut self, tok: &Tokenizer) -> Result<String> {
        let prefix_text = tok.decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let new_text = tok.decode(&self.ids[self.prefix..], self.skip_special)?;
        if new_text.len() > prefix_text.len() && !new_text.ends_with('\u{FFFD}') {
            if let Some(delta) = new_text.get(prefix_text.len()..) {
                let delta = delta.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                return Ok(delta);
            }
        }
        Ok(String::new())
    }

    /// The text held back so far (an incomplete character shows as U+FFFD). Call at the end.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let prefix_text = tok.decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let new_text = tok.decode(&self.ids[self.prefix..], self.skip_special)?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new_text
            .get(prefix_text.len()..)
            .map(str::to_string)
            .unwrap_or_default())
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Forget everything (reuses the allocation).
    pub fn reset(&mut self) {
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
    }
}

/// The result of feeding text to a [`StopMatcher`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopStep {
    /// Text that is safe to show: it cannot be part of a stop string.
    pub text: String,
    /// A stop string completed; `text` ends just before it. Generation should stop.
    pub stopped: bool,
}

/// Watches streamed text for stop strings. Text that might be the start of a stop string is
/// held back until it is clearly not; when a stop string completes, the text before it is
/// released and the stop string itself is never emitted. Empty stop strings are ignored.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    pub fn new<S: AsRef<str>>(stops: &[S]) -> Self {
        StopMatcher {
            stops: stops
                .iter()
                .map(|s| s.as_ref().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            pending: String::new(),
            stopped: false,
        }
    }

    /// Feed the next piece of text. After a stop, further input is ignored.
    pub fn push(&mut self, text: &str) -> StopStep {
        if self.stopped {
            return StopStep {
                text: String::new(),
                stopped: true,
            };
        }
        self.pending.push_str(text);
        // The earliest stop string that occurs (the longest at the same position).
        let mut hit: Option<(usize, usize)> = None;
        for s in &self.stops {
            if let Some(i) = self.pending.find(s.as_str()) {
                let better = match hit {
                    None => true,
                    Some((j, len)) => i < j || (i == j && s.len() > len),
                };
                if better {
                    hit = Some((i, s.len()));
                }
            }
        }
        if let Some((i, _)) = hit {
            self.stopped = true;
            let mut out = std::mem::take(&mut self.pending);
            out.truncate(i);
            return StopStep {
                text: out,
                stopped: true,
            };
        }
        // Hold back the longest suffix of `pending` that is a proper prefix of a stop string.
        let mut hold = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(self.pending.len());
            for k in (hold + 1..=max).rev() {
                let start = self.pending.len() - k;
                if self.pending.is_char_boundary(start) && s.starts_with(&self.pending[start..]) {
                    hold = k;
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let rest = self.pending.split_off(cut);
        let out = std::mem::replace(&mut self.pending, rest);
        StopStep {
            text: out,
            stopped: false,
        }
    }

    /// Release the held-back text (generation ended without a stop string).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Start over with the same stop strings.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.stopped = false;
    }
}
