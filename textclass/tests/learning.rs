//! Training and online learning: determinism, feedback, labels added at run time, the
//! trait used as an object, errors.

mod common;

use common::{assert_well_formed, examples, small_config, trained, CORPUS, LABELS};
use kommutator_textclass::{
    Algorithm, Classifier, ClassifyError, Example, FitOptions, NgramConfig, NgramModel, Signal,
};

#[test]
fn training_is_deterministic_for_a_seed() {
    let options = FitOptions {
        passes: 3,
        seed: 42,
        calibration_holdout: 0.0,
    };
    let mut a = NgramModel::new(small_config(), &LABELS).expect("model");
    let mut b = NgramModel::new(small_config(), &LABELS).expect("model");
    a.fit(&examples(), &options).expect("fit");
    b.fit(&examples(), &options).expect("fit");
    assert_eq!(a, b);
    assert_eq!(a.to_bytes(), b.to_bytes());

    let mut c = NgramModel::new(small_config(), &LABELS).expect("model");
    c.fit(
        &examples(),
        &FitOptions {
            seed: 43,
            ..options
        },
    )
    .expect("fit");
    assert_ne!(
        a.to_bytes(),
        c.to_bytes(),
        "another seed shuffles differently"
    );

    // Re-fitting a trained model starts from scratch.
    a.learn("something else entirely", "other", 5.0)
        .expect("learn");
    a.fit(&examples(), &options).expect("fit");
    assert_eq!(a, b);
}

#[test]
fn fits_the_training_corpus() {
    for algorithm in [Algorithm::Logistic, Algorithm::PassiveAggressive] {
        let model = trained(NgramConfig {
            algorithm,
            ..small_config()
        });
        let right = CORPUS
            .iter()
            .filter(|(text, label)| model.predict(text).label() == Some(*label))
            .count();
        assert!(
            right * 10 >= CORPUS.len() * 9,
            "{algorithm:?}: {right}/{}",
            CORPUS.len()
        );
        // Near-duplicates of training texts, with typos and another script.
        assert_eq!(
            model.predict("сколько стоит тариф про?").label(),
            Some("interest")
        );
        assert_eq!(
            model
                .predict("prilozhenie vyletaet pri otkrytii korziny")
                .label(),
            Some("bug")
        );
        assert_eq!(
            model.predict("the parcel arived damaged, refund").label(),
            Some("claim")
        );
    }
}

#[test]
fn calibration_fits_a_temperature_on_held_out_examples() {
    let mut model = NgramModel::new(small_config(), &LABELS).expect("model");
    // 48 examples x 0.5 = 24 held out, above the minimum of 20.
    let report = model
        .fit(
            &examples(),
            &FitOptions {
                passes: 5,
                seed: 1,
                calibration_holdout: 0.5,
            },
        )
        .expect("fit");
    assert!(report.holdout_accuracy.is_some());
    assert!(report.temperature > 0.0 && report.temperature.is_finite());
    assert_eq!(model.temperature(), report.temperature);
    // Too few examples to hold out: calibration is skipped.
    let report = model
        .fit(
            &examples()[..10],
            &FitOptions {
                calibration_holdout: 0.1,
                ..FitOptions::default()
            },
        )
        .expect("fit");
    assert_eq!((report.temperature, report.holdout_accuracy), (1.0, None));
}

#[test]
fn feedback_flips_the_next_prediction() {
    for algorithm in [Algorithm::Logistic, Algorithm::PassiveAggressive] {
        let mut model = trained(NgramConfig {
            algorithm,
            ..small_config()
        });
        // A question about a discount on a broken item: the model has not seen the
        // operator's rule that this is a claim.
        let text = "Есть ли скидка на сломанный товар из моего заказа?";
        let near = "есть ли скидка на сломаный товар из моего заказа";
        let before = model.predict(near);
        let first = before.label().expect("labels").to_owned();
        let target = if first == "claim" { "other" } else { "claim" };

        let mut calls = 0;
        while model.predict(near).label() != Some(target) {
            assert!(
                calls < 5,
                "{algorithm:?}: no flip after {calls} weighted updates"
            );
            model.learn(text, target, 3.0).expect("learn");
            calls += 1;
        }
        let after = model.predict(near);
        assert!(after.probability(target) > before.probability(target));
        assert_well_formed(&after, model.labels());
        // The rest of what it knew still holds.
        assert_eq!(
            model
                .predict("The app crashes when I open settings")
                .label(),
            Some("bug")
        );
    }
}

#[test]
fn a_like_raises_the_confidence() {
    let mut model = trained(small_config());
    let text = "Подскажите цену на установку кондиционера";
    let before = model.predict(text);
    let label = before.label().expect("labels").to_owned();
    model.learn(text, &label, 1.0).expect("learn");
    assert!(model.predict(text).confidence() > before.confidence());
    assert!(model.updates() > 0);
}

#[test]
fn labels_can_be_added_at_run_time() {
    let mut model = trained(small_config());
    let before = model.predict("The app crashes when I open settings");
    assert_eq!(model.add_label("claim"), Ok(1), "existing label: its index");
    assert_eq!(model.add_label("spam"), Ok(4));
    assert_eq!(model.labels().len(), 5);

    // Nothing learned for the new label yet: old predictions keep their order.
    let after = model.predict("The app crashes when I open settings");
    assert_well_formed(&after, model.labels());
    assert_eq!(after.label(), before.label());

    let spam = [
        "WIN A FREE IPHONE!!! click the link now",
        "Вы выиграли миллион! Перейдите по ссылке",
        "Casino bonus 500% only today, click here",
    ];
    for _ in 0..3 {
        for text in spam {
            model.learn(text, "spam", 2.0).expect("learn");
        }
    }
    assert_eq!(
        model.predict("you WIN a free iphone, click now").label(),
        Some("spam")
    );
    assert_eq!(
        model
            .predict("вы выиграли миллион, переходите по ссылке")
            .label(),
        Some("spam")
    );
    assert_eq!(
        model
            .predict("The app crashes when I open settings")
            .label(),
        Some("bug")
    );
    // A model saved with the new label restores it.
    let restored = NgramModel::from_bytes(&model.to_bytes()).expect("decode");
    assert_eq!(restored.labels(), model.labels());
}

#[test]
fn works_as_a_trait_object() {
    let mut engine: Box<dyn Classifier> = Box::new(trained(small_config()));
    assert_eq!(engine.engine(), "ngram");
    let prediction = engine.predict("refund please, the item is broken");
    assert_well_formed(&prediction, engine.labels());

    let mut fresh = engine.fresh();
    assert_eq!(fresh.labels(), engine.labels());
    let untrained = fresh.predict("refund please, the item is broken");
    assert_eq!(untrained.signal(), Signal::Features);
    assert!(untrained
        .ranked()
        .iter()
        .all(|s| (s.probability - 0.25).abs() < 1e-6));
    fresh.fit(&examples(), &FitOptions::default()).expect("fit");
    engine.learn("ok", "other", 1.0).expect("learn");

    fn shared<T: Send + Sync>(_: &T) {}
    shared(&engine);
}

#[test]
fn errors_name_the_cause() {
    let mut model = trained(small_config());
    assert_eq!(
        model.learn("text", "refund", 1.0),
        Err(ClassifyError::UnknownLabel("refund".to_owned()))
    );
    for weight in [0.0, -1.0, f32::NAN, f32::INFINITY, 1000.0] {
        assert!(matches!(
            model.learn("text", "claim", weight),
            Err(ClassifyError::InvalidWeight(_))
        ));
    }
    assert_eq!(
        model.fit(&[], &FitOptions::default()),
        Err(ClassifyError::NoExamples)
    );
    let bad = [Example::new("fine", "claim"), Example::new("text", "nope")];
    let before = model.clone();
    assert!(matches!(
        model.fit(&bad, &FitOptions::default()),
        Err(ClassifyError::UnknownLabel(_))
    ));
    assert_eq!(model, before, "a rejected fit changes nothing");
    assert!(matches!(
        model.add_label(""),
        Err(ClassifyError::InvalidLabel { .. })
    ));

    let none: [&str; 0] = [];
    assert_eq!(
        NgramModel::new(small_config(), &none),
        Err(ClassifyError::NoLabels)
    );
    assert_eq!(
        NgramModel::new(small_config(), &["a", "b", "a"]),
        Err(ClassifyError::DuplicateLabel("a".to_owned()))
    );
    let config = NgramConfig {
        bits: 30,
        ..NgramConfig::default()
    };
    assert!(matches!(
        NgramModel::new(config, &LABELS),
        Err(ClassifyError::InvalidConfig(_))
    ));
}

#[test]
fn examples_without_features_are_skipped_by_fit_and_learn() {
    let mut model = NgramModel::new(small_config(), &LABELS).expect("model");
    let mut data = examples();
    data.push(Example::new("   ", "other"));
    data.push(Example::new("...!?", "other").weighted(2.0));
    let report = model
        .fit(
            &data,
            &FitOptions {
                calibration_holdout: 0.0,
                ..FitOptions::default()
            },
        )
        .expect("fit");
    // "...!?" has the symbol words "!" and "?", so only the blank one is skipped.
    assert_eq!((report.examples, report.skipped), (data.len() - 1, 1));
    let before = model.clone();
    model.learn("\u{200B}\t\n", "claim", 1.0).expect("learn");
    assert_eq!(model, before);
}
