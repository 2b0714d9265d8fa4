//! The public prompt path on the fixture models: bad input, long prompts, dropping the
//! encoder, and the negative prompt with its on-disk cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cadence_core::{Checkpoint, Error, Result};
use cadence_parity::fixtures::{check_all, Case};
use cadence_text::{
    negative_prompt_key, AttentionMode, NegativePromptCache, PromptEncoder, TextEncoder,
    TextEncoderConfig, Tokenizer, WeightsIdentity, NEGATIVE_PROMPT,
};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

fn tokenizer(case: &Case) -> Result<Tokenizer> {
    let path = case
        .get("/tokenizer")
        .and_then(Value::as_str)
        .and_then(|s| s.split_whitespace().next())
        .map(|p| case.dir.join(p))
        .ok_or_else(|| Error::Config("case.json names no tokenizer".into()))?;
    Tokenizer::from_file(&path)
}

fn prompt_encoder(case: &Case) -> Result<(PromptEncoder, Checkpoint)> {
    let cfg = TextEncoderConfig::from_hf_json(
        case.get("/config_encoder")
            .ok_or_else(|| Error::Config("no config_encoder".into()))?,
    )?;
    let ckpt = Checkpoint::open(case.file("weights.safetensors"))?;
    let enc = TextEncoder::load(&ckpt, &cfg, DType::F32, &Device::Cpu)?;
    let rows = case.f64_at("/target_length")? as usize;
    Ok((
        PromptEncoder::new(tokenizer(case)?, enc).with_context_rows(rows),
        ckpt,
    ))
}

fn expect_err(what: &str, r: Result<impl std::fmt::Debug>, needle: &str) -> Result<()> {
    match r {
        Err(e) if e.to_string().contains(needle) => Ok(()),
        other => Err(Error::InvalidInput(format!(
            "{what}: expected an error mentioning {needle:?}, got {other:?}"
        ))),
    }
}

/// Counts WARN events (a minimal subscriber, to see that long prompts are reported).
struct WarnCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn bad_input(case: &Case) -> Result<()> {
    let (pe, _) = prompt_encoder(case)?;
    let cpu = Device::Cpu;
    expect_err("empty prompt", pe.encode("", &cpu), "empty")?;
    expect_err("invalid UTF-8", pe.encode_bytes(b"caf\xe9", &cpu), "UTF-8")?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let arg = std::ffi::OsStr::from_bytes(b"\xff\xfe");
        expect_err(
            "non-Unicode argument",
            pe.encode_os_str(arg, &cpu),
            "Unicode",
        )?;
    }
    let vocab = pe.encoder().config().vocab_size as u32;
    expect_err(
        "id outside the vocabulary",
        pe.encode_ids(vec![1, vocab], &cpu),
        "vocabulary",
    )?;
    Ok(())
}

fn long_prompt(case: &Case) -> Result<()> {
    let (pe, _) = prompt_encoder(case)?;
    let rows = pe.context_rows();
    // Repeat a sentence until it has more tokens than the context has rows.
    let mut text = String::from("A fisherman sings by the harbour.");
    while pe.tokenizer().encode(&text)?.len() <= rows {
        text.push_str(" A fisherman sings by the harbour.");
    }
    let warnings = Arc::new(AtomicUsize::new(0));
    let p = tracing::subscriber::with_default(WarnCounter(warnings.clone()), || {
        pe.encode(&text, &Device::Cpu)
    })?;
    if warnings.load(Ordering::SeqCst) == 0 {
        return Err(Error::InvalidInput(
            "no warning for an over-long prompt".into(),
        ));
    }
    let tokens = pe.tokenizer().encode(&text)?.len();
    if p.original_len != rows || p.token_count != tokens || p.context.dim(0)? != rows {
        return Err(Error::InvalidInput(format!(
            "long prompt: original_len {}, token_count {} (want {rows}, {tokens})",
            p.original_len, p.token_count
        )));
    }
    Ok(())
}

fn drop_after_encoding(case: &Case) -> Result<()> {
    let (pe, _) = prompt_encoder(case)?;
    let p = pe.encode("Guten Morgen.", &Device::Cpu)?;
    let before = p.context_f32()?.sum_all()?.to_scalar::<f32>()?;
    let (_tokenizer, encoder) = pe.into_parts();
    drop(encoder);
    let after = p.context_f32()?.sum_all()?.to_scalar::<f32>()?;
    if before != after || !p.context.device().is_cpu() {
        return Err(Error::InvalidInput(
            "context changed after the encoder was dropped".into(),
        ));
    }
    Ok(())
}

fn negative_prompt_cache(case: &Case) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let cache = NegativePromptCache::new(dir.path());
    let (pe, ckpt) = prompt_encoder(case)?;
    let cpu = Device::Cpu;
    let direct = pe.encode(NEGATIVE_PROMPT, &cpu)?;
    let first = pe.encode_negative(Some(&cache), &cpu)?;
    // The key is computable before any encoder exists, and the entry is then on disk.
    let key = negative_prompt_key(
        pe.tokenizer(),
        &WeightsIdentity::of_checkpoint(&ckpt)?,
        DType::F32,
        AttentionMode::Official,
        pe.context_rows(),
    )?;
    let stored = cache
        .load(&key, &cpu)
        .ok_or_else(|| Error::InvalidInput("the negative prompt was not cached".into()))?;
    let second = pe.encode_negative(Some(&cache), &cpu)?;
    let bits = |t: &Tensor| -> Result<Vec<u16>> {
        Ok(t.flatten_all()?
            .to_vec1::<half::f16>()?
            .iter()
            .map(|x| x.to_bits())
            .collect())
    };
    for (what, p) in [("first", &first), ("stored", &stored), ("second", &second)] {
        if bits(&p.context)? != bits(&direct.context)? || p.original_len != direct.original_len {
            return Err(Error::InvalidInput(format!(
                "{what} negative context differs from a direct encode"
            )));
        }
    }
    // Another attention variant is another entry.
    let other = negative_prompt_key(
        pe.tokenizer(),
        &WeightsIdentity::of_checkpoint(&ckpt)?,
        DType::F32,
        AttentionMode::EagerSoftcap,
        pe.context_rows(),
    )?;
    if cache.load(&other, &cpu).is_some() {
        return Err(Error::InvalidInput(
            "cache hit for another attention mode".into(),
        ));
    }
    Ok(())
}

#[test]
fn bad_prompts_are_clear_errors() {
    check_all(&["t5gemma_encoder"], bad_input);
}

#[test]
fn long_prompts_warn_and_are_trimmed() {
    check_all(&["t5gemma_encoder"], long_prompt);
}

#[test]
fn contexts_outlive_the_encoder() {
    check_all(&["t5gemma_encoder"], drop_after_encoding);
}

#[test]
fn negative_prompt_is_cached_on_disk() {
    check_all(&["t5gemma_encoder"], negative_prompt_cache);
}

#[test]
fn shipped_negative_prompt_is_the_fixture_text() {
    fn find(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                find(&p, out);
            } else if p.file_name().is_some_and(|n| n == "negative_prompt.txt") {
                out.push(p);
            }
        }
    }
    let mut found = Vec::new();
    find(&cadence_parity::fixtures::root(), &mut found);
    assert!(
        !found.is_empty(),
        "no negative_prompt.txt under the fixtures"
    );
    for p in found {
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            NEGATIVE_PROMPT,
            "{}",
            p.display()
        );
    }
}
