//! The memory plan is what runs: on the demo model, each placement (everything resident, the
//! text encoder and DiTs visiting, streamed) gives the same clip, and the bytes each model held
//! on the device in each stage, measured from its tensors, are what the plan says.

use cadence_pipeline::engine::{Clip, EngineBuilder, GenerationReport};
use cadence_pipeline::memory::{part, MemoryStage, Offload, Placement};
use cadence_pipeline::{BaseModel, GenerationRequest, Mode, Resolution};

/// A guided (base) 540p engine: text encoder, negative prompt, base and SR DiTs all move.
fn run(offload: Offload) -> (Clip, GenerationReport) {
    let mut engine = EngineBuilder::demo()
        .mode(Mode {
            dit: BaseModel::Base,
            resolution: Resolution::P540,
            ..Mode::distilled_t2v()
        })
        .offload(offload)
        .build(&mut ())
        .unwrap();
    engine.set_base_steps(2).unwrap();
    let mut request = GenerationRequest::new("a lighthouse at night, waves crash");
    (request.width, request.height, request.seconds, request.seed) = (64, 64, 1, 3);
    (request.sr_width, request.sr_height) = (Some(128), Some(96));
    engine.generate_clip(&request).unwrap()
}

#[test]
fn every_placement_gives_the_same_clip_and_holds_what_the_plan_says() {
    let (resident, first) = run(Offload::None);
    for (offload, placement) in [
        (Offload::None, Placement::Resident),
        (Offload::Swap, Placement::Visiting),
        (Offload::Stream, Placement::Streamed),
    ] {
        let (clip, report) = if offload == Offload::None {
            (resident.clone(), first.clone())
        } else {
            run(offload)
        };
        assert_eq!(clip, resident, "{offload:?}: the clip differs");
        let plan = &report.plan;
        assert_eq!(plan.arrangement.dits, placement);
        assert_eq!(plan.arrangement.text_encoder, placement);
        let stages: Vec<MemoryStage> = report.residency.iter().map(|r| r.stage).collect();
        let planned: Vec<MemoryStage> = plan.stages.iter().map(|s| s.stage).collect();
        assert_eq!(stages, planned, "{offload:?}");
        for measured in &report.residency {
            let planned = plan.stage(measured.stage).unwrap();
            for name in part::WEIGHTS {
                let (got, want) = (measured.part(name), planned.part(name));
                let running = matches!(
                    (name, measured.stage),
                    (part::TEXT_ENCODER, MemoryStage::Encode)
                        | (part::BASE_DIT, MemoryStage::Base)
                        | (part::SR_DIT, MemoryStage::SuperResolution)
                );
                if placement == Placement::Streamed && running {
                    // The plan bounds the layers in flight by the largest layer; the stream
                    // held the real ones, and more than its resident parts.
                    let idle = plan.stage(MemoryStage::Decode).unwrap().part(name);
                    assert!(
                        idle < got && got <= want,
                        "{offload:?} {} {name}: {got} not in ({idle}, {want}]",
                        measured.stage
                    );
                } else {
                    assert_eq!(got, want, "{offload:?} {} {name}", measured.stage);
                }
            }
        }
        println!("{offload:?}:\n{}", plan.table());
    }
}

#[test]
fn a_warm_engine_reuses_the_encoded_prompts() {
    let engine = EngineBuilder::demo()
        .mode(Mode {
            dit: BaseModel::Base,
            ..Mode::distilled_t2v()
        })
        .build(&mut ())
        .unwrap();
    let mut request = GenerationRequest::new("a fox in the snow");
    (request.width, request.height, request.seconds) = (64, 64, 1);
    let (a, first) = engine.generate_clip(&request).unwrap();
    // The prompt and the negative prompt went through the encoder.
    assert_eq!(first.text.tokens.len(), 2);
    request.seed += 1;
    let (_, second) = engine.generate_clip(&request).unwrap();
    assert!(second.text.tokens.is_empty(), "both came from the cache");
    request.seed -= 1;
    assert_eq!(
        engine.generate_clip(&request).unwrap().0,
        a,
        "same clip from the cache"
    );
    request.prompt = "another prompt".into();
    let (_, third) = engine.generate_clip(&request).unwrap();
    assert_eq!(third.text.tokens.len(), 1, "only the new prompt");
}
