//! Which faces go into each step, and their preparation (augment, scale) on other threads while
//! the model computes.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use burn::tensor::{Device, Int, Tensor, TensorData};
use fer_data::augment::{AugmentConfig, alternating_flip};
use fer_data::rng::Rng;
use fer_data::{Dataset, PIXELS, SIDE};
use rayon::prelude::*;

/// A prepared batch in plain memory: pixels scaled to [0, 1], labels as class ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Mixes a run's seed with a position into an independent seed.
pub(crate) fn mix(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    let mut rng = Rng::seed(seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64() ^ Rng::seed(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ c.rotate_left(29)).next_u64()
}

/// The order of faces over one epoch, a pure function of (seed, epoch).
#[derive(Clone, Debug)]
pub struct BatchPlan {
    faces: usize,
    batch_size: usize,
    steps: usize,
    seed: u64,
    one_pass: bool,
}

impl BatchPlan {
    /// With `steps_per_epoch`, an epoch draws `steps x batch_size` faces from successive
    /// reshuffles of the data (Keras' `fit_generator` over a `flow`); without, it is one shuffled
    /// pass with a smaller last batch.
    pub fn new(faces: usize, batch_size: usize, steps_per_epoch: Option<usize>, seed: u64) -> BatchPlan {
        let steps = steps_per_epoch.unwrap_or(faces.div_ceil(batch_size));
        BatchPlan { faces, batch_size, steps, seed, one_pass: steps_per_epoch.is_none() }
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Faces drawn per epoch.
    fn epoch_len(&self) -> usize {
        (self.steps * self.batch_size).min(if self.one_pass { self.faces } else { usize::MAX })
    }

    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let wanted = self.epoch_len();
        let mut rng = Rng::seed(mix(self.seed, 1, epoch as u64, 0));
        let mut order = Vec::with_capacity(wanted);
        while order.len() < wanted && self.faces > 0 {
            let mut pass: Vec<usize> = (0..self.faces).collect();
            rng.shuffle(&mut pass);
            order.extend(pass);
        }
        order.truncate(wanted);
        order
    }

    /// Face indices of `step` within an epoch's order.
    pub fn step_indices<'a>(&self, order: &'a [usize], step: usize) -> &'a [usize] {
        let start = (step * self.batch_size).min(order.len());
        let end = ((step + 1) * self.batch_size).min(order.len());
        &order[start..end]
    }
}

/// What alternating flips remember: how many times each face has been drawn so far in the run.
/// A face's n-th sighting (from 0) is flipped by [`alternating_flip`] with its own coin, so it
/// shows both ways in any two sightings in a row, whichever epochs and reshuffles they fall in.
pub struct Sightings {
    seen: Vec<u32>,
    seed: u64,
}

impl Sightings {
    /// The counts at the start of `epoch`, every earlier order drawn again: a pure function of
    /// the plan, so a resumed run counts as an uninterrupted one.
    pub fn before_epoch(plan: &BatchPlan, seed: u64, epoch: usize) -> Sightings {
        let mut sightings = Sightings { seen: vec![0u32; plan.faces], seed };
        for e in 0..epoch {
            sightings.count(&plan.epoch_order(e));
        }
        sightings
    }

    /// Counts `faces` as drawn (those of an epoch's steps a resumed run skips).
    pub fn count(&mut self, faces: &[usize]) {
        faces.iter().for_each(|&face| self.seen[face] += 1);
    }

    /// The flips of the next faces drawn, counted as seen.
    pub fn flips(&mut self, faces: &[usize]) -> Vec<bool> {
        faces
            .iter()
            .map(|&face| {
                let flip = alternating_flip(mix(self.seed, 4, face as u64, 0), self.seen[face] as usize);
                self.seen[face] += 1;
                flip
            })
            .collect()
    }
}

/// Prepares one batch: each face augmented with its own generator, seeded by its position, and
/// flipped as `flips` says where given (alternating flips) instead of by its coin.
pub fn make_batch(
    data: &Dataset,
    indices: &[usize],
    augment: &AugmentConfig,
    seed: u64,
    epoch: usize,
    step: usize,
    flips: Option<&[bool]>,
) -> Batch {
    let mut images = vec![0.0f32; indices.len() * PIXELS];
    images.par_chunks_mut(PIXELS).zip(indices.par_iter()).enumerate().for_each(|(k, (out, &i))| {
        if augment.is_none() {
            for (o, p) in out.iter_mut().zip(data.image(i)) {
                *o = *p as f32;
            }
        } else {
            let mut rng = Rng::seed(mix(seed, 2 + epoch as u64, step as u64, k as u64));
            augment.augment_f32_flipped(data.image(i), &mut rng, flips.map(|f| f[k]), out);
        }
        for v in out.iter_mut() {
            *v /= fer_model::INPUT_SCALE;
        }
    });
    let labels = indices.iter().map(|&i| data.label(i).map_or(0, |l| l.id() as i64)).collect();
    Batch { images, labels }
}

/// Batches of `epoch` from `start_step` on, prepared on a background thread two steps ahead;
/// from the run's step `plain_from` on (counted over all epochs), without augmentation.
pub(crate) fn prefetch(
    data: Arc<Dataset>,
    plan: BatchPlan,
    augment: AugmentConfig,
    seed: u64,
    epoch: usize,
    start_step: usize,
    plain_from: usize,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        let order = plan.epoch_order(epoch);
        let plain = AugmentConfig::none();
        let mut sightings = augment.alternate_flips.then(|| {
            let mut sightings = Sightings::before_epoch(&plan, seed, epoch);
            sightings.count(&order[..(start_step * plan.batch_size).min(order.len())]);
            sightings
        });
        for step in start_step..plan.steps() {
            let augment = if epoch * plan.steps() + step >= plain_from { &plain } else { &augment };
            let indices = plan.step_indices(&order, step);
            let flips = sightings.as_mut().filter(|_| augment.alternate_flips).map(|s| s.flips(indices));
            let batch = make_batch(&data, indices, augment, seed, epoch, step, flips.as_deref());
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    rx
}

/// Moves a batch onto `device` as `[batch, 1, 48, 48]` images and class-id targets.
pub fn batch_to_tensors(batch: Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = batch.len();
    let images = Tensor::from_data(TensorData::new(batch.images, [n, 1, SIDE, SIDE]), device);
    let labels = Tensor::from_data(TensorData::new(batch.labels, [n]), device);
    (images, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_the_data_and_are_reproducible() {
        let plan = BatchPlan::new(10, 4, None, 3);
        assert_eq!(plan.steps(), 3);
        let order = plan.epoch_order(0);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(plan.step_indices(&order, 2).len(), 2);
        assert_eq!(order, plan.epoch_order(0));
        assert_ne!(order, plan.epoch_order(1));

        // Keras-style fixed steps: 5 x 4 = 20 faces from two reshuffles of 10.
        let plan = BatchPlan::new(10, 4, Some(5), 3);
        let order = plan.epoch_order(0);
        assert_eq!(order.len(), 20);
        let mut first: Vec<_> = order[..10].to_vec();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
    }

    /// `n` distinct patterned faces, labelled round the classes.
    fn patterned_faces(n: u8) -> Arc<Dataset> {
        let mut data = Dataset::new();
        for i in 0..n {
            let face: Vec<u8> = (0..PIXELS).map(|p| (p as u8).wrapping_mul(7).wrapping_add(i * 13)).collect();
            data.push(&face, fer_data::Emotion::from_id(usize::from(i % 7)), "Training");
        }
        Arc::new(data)
    }

    #[test]
    fn the_plain_tail_starts_at_its_step_across_epochs() {
        let data = patterned_faces(12);
        let (augment, plain) = (AugmentConfig::report(), AugmentConfig::none());
        let plan = BatchPlan::new(data.len(), 4, Some(3), 5);
        let expected = |epoch: usize, step: usize, config: &AugmentConfig| {
            make_batch(&data, plan.step_indices(&plan.epoch_order(epoch), step), config, 5, epoch, step, None)
        };
        assert_ne!(expected(1, 0, &augment), expected(1, 0, &plain), "the report's augmentation changes faces");
        // Run step 4 = epoch 1, step 1: epoch 0 is all augmented, epoch 1 plain from its step 1 on.
        for epoch in 0..2 {
            let batches: Vec<Batch> =
                prefetch(data.clone(), plan.clone(), augment.clone(), 5, epoch, 0, 4).iter().collect();
            assert_eq!(batches.len(), 3);
            for (step, batch) in batches.iter().enumerate() {
                let want = if epoch * 3 + step >= 4 { &plain } else { &augment };
                assert_eq!(*batch, expected(epoch, step, want), "epoch {epoch} step {step}");
            }
        }
        // A resumed epoch starts mid-way and keeps the same rule.
        let resumed: Vec<Batch> = prefetch(data.clone(), plan.clone(), augment.clone(), 5, 1, 2, 4).iter().collect();
        assert_eq!(resumed, vec![expected(1, 2, &plain)]);
    }

    #[test]
    fn alternating_flips_alternate_per_sighting_over_the_run() {
        // 10 faces, 4 steps of 4 per epoch: 1.6 passes per epoch, the second cut short, so a
        // pass's parity would show some faces the same way twice running; sightings do not.
        let plan = BatchPlan::new(10, 4, Some(4), 9);
        let mut seen: Vec<Vec<bool>> = vec![Vec::new(); 10];
        let mut sightings = Sightings::before_epoch(&plan, 9, 0);
        for epoch in 0..3 {
            let order = plan.epoch_order(epoch);
            for step in 0..plan.steps() {
                let faces = plan.step_indices(&order, step);
                for (&face, flip) in faces.iter().zip(sightings.flips(faces)) {
                    seen[face].push(flip);
                }
            }
        }
        assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), 48);
        for (face, flips) in seen.iter().enumerate() {
            assert!(flips.len() >= 3, "face {face}");
            assert!(flips.windows(2).all(|w| w[0] != w[1]), "face {face}: {flips:?}");
        }
        let first_flipped = seen.iter().filter(|f| f[0]).count();
        assert!((1..10).contains(&first_flipped), "each face's own coin: {first_flipped} of 10");
        // Counting afresh mid-run (a resume) gives the flips the run went on with.
        let (mut fresh, mut continued) = (Sightings::before_epoch(&plan, 9, 1), Sightings::before_epoch(&plan, 9, 0));
        fresh.count(&plan.epoch_order(1)[..3 * 4]);
        let drawn: Vec<usize> = (0..2).flat_map(|e| plan.epoch_order(e)).take(4 * 4 + 3 * 4).collect();
        continued.flips(&drawn);
        let next = plan.step_indices(&plan.epoch_order(1), 3).to_vec();
        assert_eq!(fresh.flips(&next), continued.flips(&next));
    }

    #[test]
    fn prefetch_flips_alternately_when_asked() {
        let data = patterned_faces(6);
        let flips_only = AugmentConfig { horizontal_flip: true, ..AugmentConfig::none() };
        let alternating = AugmentConfig { alternate_flips: true, ..flips_only.clone() };
        let plan = BatchPlan::new(data.len(), 3, Some(4), 2);
        let order = plan.epoch_order(0);
        let batches: Vec<Batch> =
            prefetch(data.clone(), plan.clone(), alternating, 2, 0, 0, usize::MAX).iter().collect();
        // 12 faces drawn from 6: each twice, the other way round the second time.
        let mut sightings = Sightings::before_epoch(&plan, 2, 0);
        let mut flipped = 0;
        for (step, batch) in batches.iter().enumerate() {
            let flips = sightings.flips(plan.step_indices(&order, step));
            for (k, &face) in plan.step_indices(&order, step).iter().enumerate() {
                let flip = flips[k];
                flipped += usize::from(flip);
                let mut want: Vec<f32> = data.image(face).iter().map(|&p| p as f32 / fer_model::INPUT_SCALE).collect();
                if flip {
                    want.chunks_exact_mut(SIDE).for_each(|row| row.reverse());
                }
                assert_eq!(batch.images[k * PIXELS..(k + 1) * PIXELS], want[..], "step {step} face {face}");
            }
        }
        assert_eq!(flipped, 6);
        let coins: Vec<Batch> = prefetch(data, plan, flips_only, 2, 0, 0, usize::MAX).iter().collect();
        assert_ne!(coins, batches, "the coin flips other faces");
    }
}
