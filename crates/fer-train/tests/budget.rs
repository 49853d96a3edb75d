//! `--time-budget` sizes a scheduled run. In a test binary of its own: burn's random generator
//! (dropout masks) is global to the process, so a run on another test thread would draw from it
//! between our seeded steps and the rerun by count could not be compared bit for bit.

mod common;

use std::time::{Duration, Instant};

use burn::tensor::Device;
use common::{data, run, tiny};
use fer_train::{StopReason, plan_steps, read_run_config, size_to_budget};

#[test]
fn plans_fill_the_budget_with_whole_epochs_or_one_shorter_one() {
    // 10 steps of 1 s and 5 s of validation per epoch: 15 s an epoch.
    assert_eq!(plan_steps(100.0, 1.0, 5.0, 10), Some((6, 10)));
    assert_eq!(plan_steps(15.0, 1.0, 5.0, 10), Some((1, 10)));
    // Less than an epoch: one epoch of the steps that fit beside its validation.
    assert_eq!(plan_steps(12.0, 1.0, 5.0, 10), Some((1, 7)));
    assert_eq!(plan_steps(5.5, 1.0, 5.0, 10), None);
}

#[test]
fn a_budget_too_short_for_the_cycle_ends_annealed_and_a_rerun_by_count_repeats_it() {
    // The fast recipe's parts on the tiny CNN, with a cycle far too long for the budget.
    let mut config = tiny(400);
    let fast = fer_train::Recipe::fast_cnn();
    config.recipe.schedule = fast.schedule;
    config.recipe.ema_decay = Some(0.9);
    config.recipe.steps_per_epoch = Some(6);
    let budget = Duration::from_secs(4);
    let device = Device::flex();

    let started = Instant::now();
    let (sized, plan) = size_to_budget(&config, &data(), &device, budget).unwrap();
    assert!(plan.epochs >= 1 && plan.epochs < 400, "{plan:?}");
    assert_eq!((sized.recipe.epochs, sized.recipe.steps_per_epoch), (plan.epochs, Some(plan.steps_per_epoch)));
    assert!(plan.planned_seconds() + plan.probe_seconds <= budget.as_secs_f64(), "{plan:?}");
    assert!(plan.step_seconds > 0.0 && plan.eval_seconds > 0.0);

    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path(), &sized, None).unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.stop, StopReason::Finished);
    // Annealed: the one-cycle rate reached its end (zero) on the last step.
    let last = outcome.state.history.last().unwrap();
    assert_eq!(outcome.state.history.len(), plan.epochs);
    assert!(last.lr.abs() < 1e-12, "last rate {}", last.lr);
    // Generous, for a loaded test machine: the plan aims at 95% of the budget.
    assert!(took < budget * 3, "took {took:?} for a budget of {budget:?}");

    // The count and the plan behind it are in config.json.
    let recorded = read_run_config(dir.path()).unwrap();
    assert_eq!(recorded.recipe, sized.recipe);
    assert_eq!(recorded.sized_to_budget.as_ref(), Some(&plan));

    // A rerun by count (no budget) computes the same run: the probe took nothing from it.
    let mut by_count = config.clone();
    by_count.recipe.epochs = plan.epochs;
    by_count.recipe.steps_per_epoch = Some(plan.steps_per_epoch);
    let again = tempfile::tempdir().unwrap();
    let rerun = run(again.path(), &by_count, None).unwrap();
    let numbers = |s: &fer_train::TrainState| {
        s.history.iter().map(|r| (r.train_loss, r.val_loss, r.val_acc, r.lr, r.ema_val_acc)).collect::<Vec<_>>()
    };
    assert_eq!(numbers(&rerun.state), numbers(&outcome.state));
    let weights =
        |d: &std::path::Path| fer_model::flatten(&fer_model::load_model(&d.join("best-ema.fer"), &device).unwrap());
    assert_eq!(weights(again.path()), weights(dir.path()));
}
