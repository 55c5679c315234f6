//! Tokenizer, chat templates, streaming decode and stop strings.
//!
//! Goldens: tests/fixtures/tok/ (tools/make_tok_fixtures.py, Python `tokenizers`) and
//! tests/fixtures/chat/goldens.json (tools/make_chat_goldens.py, transformers' Jinja rendering).

mod common;

use std::path::PathBuf;

use fourierft::tokenizer::{
    render, ChatDate, ChatFormat, ChatMessage, StopMatcher, StopStep, TextStream, Tokenizer,
};
use fourierft::Error;
use serde_json::Value;

fn tok_dir() -> PathBuf {
    common::fixtures().join("tok")
}

fn tok() -> Tokenizer {
    Tokenizer::from_dir(&tok_dir()).expect("load fixture tokenizer")
}

fn json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).expect("read fixture")).expect("parse fixture")
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

// ---------------------------------------------------------------- encode / decode

#[test]
fn encode_decode_match_python_tokenizers() {
    let t = tok();
    let g = json(tok_dir().join("goldens.json"));
    assert_eq!(t.vocab_size() as u64, g["vocab_size"].as_u64().unwrap());
    for c in g["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let ids = ids_of(&c["ids"]);
        assert_eq!(t.encode(text, true).unwrap(), ids, "encode {text:?}");
        assert_eq!(
            t.encode(text, false).unwrap(),
            ids,
            "encode (no specials) {text:?}"
        );
        assert_eq!(
            t.decode(&ids, false).unwrap(),
            c["decode"].as_str().unwrap(),
            "decode {text:?}"
        );
        assert_eq!(
            t.decode(&ids, true).unwrap(),
            c["decode_skip_special"].as_str().unwrap(),
            "decode skip_special {text:?}"
        );
        for (id, piece) in ids.iter().zip(c["pieces"].as_array().unwrap()) {
            assert_eq!(t.decode(&[*id], false).unwrap(), piece.as_str().unwrap());
        }
    }
}

#[test]
fn round_trip_and_special_tokens() {
    let t = tok();
    for s in [
        "café 你好 🦀 naïve",
        "  x\n\ty  ",
        "0123456789",
        "ЖЗИ ﬁ unseen",
    ] {
        let ids = t.encode(s, false).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), s);
    }
    assert_eq!(t.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(t.token_to_id("no such token"), None);
    assert_eq!(t.id_to_token(2).as_deref(), Some("<|im_end|>"));
    // Special-token text in the input becomes the special id.
    let ids = t.encode("<|im_start|>user", false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(t.decode(&ids, true).unwrap(), "user");
    assert_eq!(t.decode(&[], false).unwrap(), "");
}

#[test]
fn decode_rejects_out_of_vocab_ids() {
    let t = tok();
    let n = t.vocab_size() as u32;
    let e = t.decode(&[5, n], false).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains(&n.to_string()), "{e}");
    let mut s = TextStream::new(false);
    assert_eq!(s.push(&t, 40).unwrap(), t.decode(&[40], false).unwrap());
    assert!(s.push(&t, u32::MAX).is_err());
    assert_eq!(s.ids(), &[40]); // the bad id was not kept; the stream goes on
    assert_eq!(s.push(&t, 41).unwrap(), t.decode(&[41], false).unwrap());
}

// ---------------------------------------------------------------- special ids and configs

#[test]
fn special_ids_from_configs() {
    let t = tok();
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.bos_token(), Some("<|im_start|>"));
    assert_eq!(t.eos_ids(), &[2]);
    assert!(t.is_eos(2) && !t.is_eos(1));
    assert!(!t.add_bos_token());
    assert!(t.chat_template().unwrap().contains("SmolLM"));
}

#[test]
fn eos_union_of_list_int_and_token() {
    let d = common::scratch("tok-eos");
    common::copy_dir(&tok_dir(), &d);
    std::fs::write(
        d.join("generation_config.json"),
        r#"{"bos_token_id": 0, "eos_token_id": [0, 2]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("config.json"),
        r#"{"eos_token_id": 5, "bos_token_id": 3}"#,
    )
    .unwrap();
    let mut cfg = json(d.join("tokenizer_config.json"));
    cfg["eos_token"] = serde_json::json!({"content": "<|im_end|>", "special": true});
    cfg["bos_token"] = Value::Null;
    std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let t = Tokenizer::from_dir(&d).unwrap();
    assert_eq!(t.eos_ids(), &[0, 2, 5]);
    assert_eq!(t.bos_id(), Some(0)); // generation_config before config.json
    assert_eq!(t.bos_token(), Some("<|endoftext|>"));
}

#[test]
fn only_tokenizer_json_is_required() {
    let d = common::scratch("tok-bare");
    std::fs::copy(tok_dir().join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    let t = Tokenizer::from_dir(&d).unwrap();
    assert!(t.eos_ids().is_empty());
    assert_eq!(t.bos_id(), None);
    assert!(t.chat_template().is_none());
    assert_eq!(
        t.encode("hello", false).unwrap(),
        tok().encode("hello", false).unwrap()
    );
    let e = t.apply_chat(&[ChatMessage::user("hi")], true).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer_config.json"), "{e}");
}

#[test]
fn add_bos_token_prepends_once() {
    let d = common::scratch("tok-addbos");
    common::copy_dir(&tok_dir(), &d);
    let mut cfg = json(d.join("tokenizer_config.json"));
    cfg["add_bos_token"] = Value::Bool(true);
    std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let t = Tokenizer::from_dir(&d).unwrap();
    let plain = t.encode("hello", false).unwrap();
    let with = t.encode("hello", true).unwrap();
    assert_eq!(with[0], 1);
    assert_eq!(&with[1..], &plain[..]);
    assert_eq!(t.encode("<|im_start|>hello", true).unwrap()[..2], with[..2]);
}

#[test]
fn chat_template_jinja_file_is_used() {
    let d = common::scratch("tok-jinja");
    common::copy_dir(&tok_dir(), &d);
    let mut cfg = json(d.join("tokenizer_config.json"));
    let tpl = cfg["chat_template"].as_str().unwrap().to_string();
    cfg.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    std::fs::write(d.join("chat_template.jinja"), tpl).unwrap();
    let t = Tokenizer::from_dir(&d).unwrap();
    assert!(matches!(
        t.chat_format(),
        Ok(ChatFormat::ChatMl {
            default_system: Some(_),
            ..
        })
    ));
}

/// Each broken file gives an error that names it.
#[test]
fn bad_files_name_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        ("tokenizer.json", "{not json", "tokenizer.json"),
        ("tokenizer.json", r#"{"model": 3}"#, "tokenizer.json"),
        ("tokenizer_config.json", "[1,", "tokenizer_config.json"),
        ("tokenizer_config.json", "[]", "tokenizer_config.json"),
        (
            "tokenizer_config.json",
            r#"{"eos_token": "<|nope|>"}"#,
            "tokenizer_config.json",
        ),
        (
            "tokenizer_config.json",
            r#"{"bos_token": 7}"#,
            "tokenizer_config.json",
        ),
        (
            "tokenizer_config.json",
            r#"{"add_bos_token": "yes"}"#,
            "tokenizer_config.json",
        ),
        (
            "tokenizer_config.json",
            r#"{"chat_template": 5}"#,
            "tokenizer_config.json",
        ),
        (
            "generation_config.json",
            r#"{"eos_token_id": "two"}"#,
            "generation_config.json",
        ),
        (
            "generation_config.json",
            r#"{"eos_token_id": [2, 99999]}"#,
            "generation_config.json",
        ),
        ("config.json", r#"{"eos_token_id": -1}"#, "config.json"),
        ("config.json", "nope", "config.json"),
    ];
    for (i, (file, body, named)) in cases.iter().enumerate() {
        let d = common::scratch(&format!("tok-bad-{i}"));
        common::copy_dir(&tok_dir(), &d);
        std::fs::write(d.join(file), body).unwrap();
        let e = Tokenizer::from_dir(&d).expect_err(&format!("{file} = {body} must fail"));
        let msg = e.to_string();
        assert!(msg.contains(named), "{file} = {body}: {msg}");
    }
    let d = common::scratch("tok-missing");
    let e = Tokenizer::from_dir(&d).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

// ---------------------------------------------------------------- chat templates

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn chat_formats_are_detected() {
    let g = json(common::fixtures().join("chat/goldens.json"));
    let tpl = |name: &str| {
        g["templates"][name]["chat_template"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        ChatFormat::detect(&tpl("smollm2"), "<|im_start|>").unwrap(),
        ChatFormat::ChatMl {
            default_system: Some(
                "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
            ),
            default_in_loop: true,
        }
    );
    assert_eq!(
        ChatFormat::detect(&tpl("qwen2"), "").unwrap(),
        ChatFormat::ChatMl {
            default_system: Some("You are a helpful assistant.".into()),
            default_in_loop: true,
        }
    );
    assert_eq!(
        ChatFormat::detect(&tpl("chatml"), "").unwrap(),
        ChatFormat::ChatMl {
            default_system: None,
            default_in_loop: false,
        }
    );
    assert_eq!(
        ChatFormat::detect(&tpl("llama3"), "<|begin_of_text|>").unwrap(),
        ChatFormat::Llama3 {
            bos: "<|begin_of_text|>".into(),
            trim: true,
        }
    );
    assert_eq!(
        ChatFormat::detect(&tpl("llama31"), "<|begin_of_text|>").unwrap(),
        ChatFormat::Llama31 {
            bos: "<|begin_of_text|>".into(),
            date: ChatDate::Fixed("26 Jul 2024".into()),
        }
    );
    let e = ChatFormat::detect("{{ messages[0].content }} [INST]", "<s>").unwrap_err();
    assert!(e.contains("not recognised"), "{e}");
}

/// Every golden rendering of transformers, byte for byte.
#[test]
fn chat_matches_transformers_goldens() {
    let g = json(common::fixtures().join("chat/goldens.json"));
    let mut n = 0;
    for c in g["cases"].as_array().unwrap() {
        let name = c["template"].as_str().unwrap();
        let t = &g["templates"][name];
        let format = ChatFormat::detect(
            t["chat_template"].as_str().unwrap(),
            t["bos_token"].as_str().unwrap_or(""),
        )
        .unwrap();
        let msgs = messages(&c["messages"]);
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let date = c["date_string"].as_str();
        let got = render(&format, &msgs, gen, date);
        let what = format!("{name} / {} / gen={gen} / date={date:?}", c["conversation"]);
        match c["expected"].as_str() {
            Some(want) => assert_eq!(got.unwrap(), want, "{what}"),
            None => assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "{what}: the template raises, expected an error"
            ),
        }
        n += 1;
    }
    assert!(n >= 100, "only {n} golden cases");
}

/// The fixture folder carries SmolLM2's real template: apply_chat through Tokenizer.
#[test]
fn apply_chat_smollm2_from_folder() {
    let t = tok();
    let s = t
        .apply_chat(&[ChatMessage::user("What is 2+2?")], true)
        .unwrap();
    assert_eq!(
        s,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = t.encode(&s, false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(*ids.last().unwrap(), t.encode("\n", false).unwrap()[0]);
    // with_date is ignored by ChatML.
    assert_eq!(
        t.apply_chat_with_date(&[ChatMessage::user("What is 2+2?")], true, "01 Jan 2000")
            .unwrap(),
        s
    );
}

#[test]
fn unrecognised_template_is_unsupported_naming_tokenizer_config() {
    let d = common::scratch("tok-unknown-template");
    common::copy_dir(&tok_dir(), &d);
    let mut cfg = json(d.join("tokenizer_config.json"));
    cfg["chat_template"] = Value::String(
        "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
            .into(),
    );
    std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let t = Tokenizer::from_dir(&d).unwrap(); // loading still works
    assert!(t.chat_format().is_err());
    let e = t.apply_chat(&[ChatMessage::user("hi")], true).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer_config.json"), "{e}");
}

#[test]
fn llama32_style_template_uses_a_real_date() {
    let g = json(common::fixtures().join("chat/goldens.json"));
    let tpl = g["templates"]["llama31"]["chat_template"]
        .as_str()
        .unwrap()
        .replace(
            "{%- set date_string = \"26 Jul 2024\" %}",
            "{%- set date_string = strftime_now(\"%d %b %Y\") %}",
        );
    let f = ChatFormat::detect(&tpl, "<|begin_of_text|>").unwrap();
    assert!(matches!(
        f,
        ChatFormat::Llama31 {
            date: ChatDate::Today,
            ..
        }
    ));
    let s = render(&f, &[ChatMessage::user("hi")], false, None).unwrap();
    let date = s
        .split("Today Date: ")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    // "DD Mon YYYY"
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 3, "{date:?}");
    assert_eq!(parts[0].len(), 2);
    assert!(parts[0].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)));
    assert_eq!(parts[1].len(), 3);
    assert!(parts[2].parse::<u32>().is_ok_and(|y| y >= 2024), "{date:?}");
}

// ---------------------------------------------------------------- streaming

/// Streaming token by token yields exactly the full decode, and never a partial character.
#[test]
fn text_stream_is_utf8_safe_and_complete() {
    let t = tok();
    let g = json(tok_dir().join("goldens.json"));
    for c in g["cases"].as_array().unwrap() {
        let ids = ids_of(&c["ids"]);
        for skip in [false, true] {
            let mut s = TextStream::new(skip);
            let mut out = String::new();
            for &id in &ids {
                let piece = s.push(&t, id).unwrap();
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "{:?} piece {piece:?}",
                    c["text"]
                );
                out.push_str(&piece);
            }
            out.push_str(&s.finish(&t).unwrap());
            assert_eq!(out, t.decode(&ids, skip).unwrap(), "{:?}", c["text"]);
            assert_eq!(s.ids(), &ids[..]);
        }
    }
}

#[test]
fn text_stream_holds_split_emoji_until_complete() {
    let t = tok();
    let ids = t.encode("a🦀b", false).unwrap();
    // The fixture splits the crab's 4 bytes over several tokens.
    assert!(ids.len() >= 3, "{ids:?}");
    let mut s = TextStream::new(false);
    let pieces: Vec<String> = ids.iter().map(|&i| s.push(&t, i).unwrap()).collect();
    assert_eq!(pieces.concat(), "a🦀b");
    assert!(pieces.iter().any(|p| p.is_empty()), "{pieces:?}");
    assert!(pieces.iter().any(|p| p.starts_with('🦀')), "{pieces:?}");
    // An incomplete tail is flushed lossily at the end.
    let crab = t.encode("🦀", false).unwrap();
    let mut s = TextStream::new(false);
    assert_eq!(s.push(&t, crab[0]).unwrap(), "");
    assert_eq!(s.finish(&t).unwrap(), "\u{FFFD}");
    s.reset();
    assert!(s.ids().is_empty());
}

// ---------------------------------------------------------------- stop strings

fn feed(m: &mut StopMatcher, pieces: &[&str]) -> (String, bool) {
    let mut out = String::new();
    for p in pieces {
        let StopStep { text, stopped } = m.push(p);
        out.push_str(&text);
        if stopped {
            return (out, true);
        }
    }
    out.push_str(&m.finish());
    (out, false)
}

#[test]
fn stop_string_split_across_pieces() {
    let mut m = StopMatcher::new(&["<|im_end|>"]);
    assert_eq!(
        m.push("Hello <|im"),
        StopStep {
            text: "Hello ".into(),
            stopped: false
        }
    );
    assert_eq!(
        m.push("_en"),
        StopStep {
            text: "".into(),
            stopped: false
        }
    );
    assert_eq!(
        m.push("d|> trailing"),
        StopStep {
            text: "".into(),
            stopped: true
        }
    );
    assert!(m.stopped());
    assert_eq!(
        m.push("more"),
        StopStep {
            text: "".into(),
            stopped: true
        }
    );
    assert_eq!(m.finish(), "");
}

#[test]
fn held_text_is_released_when_it_is_not_a_stop() {
    let mut m = StopMatcher::new(&["STOP"]);
    assert_eq!(m.push("ab ST").text, "ab ");
    assert_eq!(m.push("ART").text, "START");
    assert_eq!(m.push("S").text, "");
    assert_eq!(m.finish(), "S");
    assert_eq!(
        feed(&mut StopMatcher::new(&["STOP"]), &["x", "STO", "P", "y"]),
        ("x".into(), true)
    );
}

#[test]
fn earliest_of_several_stops_wins() {
    let mut m = StopMatcher::new(&["\n\nUser:", "###", ""]);
    assert_eq!(
        feed(&mut m, &["answer", " ##", "# more \n\nUser:"]),
        ("answer ".into(), true)
    );
    let mut m = StopMatcher::new(&["bc", "abcd"]);
    // Both complete in the same piece: the one starting first wins.
    assert_eq!(feed(&mut m, &["xab", "cd"]), ("x".into(), true));
    // The first to complete wins otherwise.
    let mut m = StopMatcher::new(&["bc", "abcd"]);
    assert_eq!(feed(&mut m, &["xa", "bc", "d"]), ("xa".into(), true));
    // No stops: everything passes straight through.
    let mut m = StopMatcher::new::<&str>(&[]);
    assert_eq!(m.push("anything").text, "anything");
}

#[test]
fn stop_matching_respects_multibyte_chars() {
    let mut m = StopMatcher::new(&["é!"]);
    let (out, stopped) = feed(&mut m, &["caf", "é", "? café", "!x"]);
    assert_eq!((out.as_str(), stopped), ("café? caf", true));
    let mut m = StopMatcher::new(&["🦀🦀"]);
    let s = m.push("a🦀");
    assert_eq!(s.text, "a");
    assert_eq!(m.push("b").text, "🦀b");
    m.reset();
    assert!(!m.stopped());
    assert_eq!(feed(&mut m, &["x🦀", "🦀y"]), ("x".into(), true));
}

/// TextStream + StopMatcher together, as a generate loop uses them.
#[test]
fn stream_then_stop() {
    let t = tok();
    let ids = t
        .encode("Hello there!<|im_end|>\n<|im_start|>user", false)
        .unwrap();
    let mut s = TextStream::new(false);
    let mut m = StopMatcher::new(&["<|im_end|>"]);
    let mut out = String::new();
    for &id in &ids {
        let step = m.push(&s.push(&t, id).unwrap());
        out.push_str(&step.text);
        if step.stopped {
            break;
        }
    }
    assert_eq!(out, "Hello there!");
}
