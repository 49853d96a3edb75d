//! Augmentation: properties (proptest) and parity with Keras' `apply_affine_transform`.

use fer_data::augment::{
    AffineParams, AugmentConfig, ERASED_AREA, ERASED_ASPECT, FillMode, alternating_flip, apply_affine,
    apply_affine_f32, erased_rect,
};
use fer_data::{PIXELS, SIDE, rng::Rng};
use proptest::prelude::*;

fn face() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), PIXELS)
}

fn params() -> impl Strategy<Value = AffineParams> {
    (-45.0..45.0f64, -8.0..8.0f64, -8.0..8.0f64, -30.0..30.0f64, 0.7..1.3f64, 0.7..1.3f64, any::<bool>()).prop_map(
        |(theta, tx, ty, shear, zx, zy, flip_horizontal)| AffineParams {
            theta,
            tx,
            ty,
            shear,
            zx,
            zy,
            flip_horizontal,
        },
    )
}

fn fill() -> impl Strategy<Value = FillMode> {
    prop_oneof![Just(FillMode::Nearest), (0.0..255.0f32).prop_map(FillMode::Constant)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn identity_leaves_the_image_unchanged(img in face(), fill in fill()) {
        prop_assert_eq!(apply_affine(&img, &AffineParams::default(), fill), img);
    }

    #[test]
    fn flipping_twice_is_the_identity(img in face()) {
        let flip = AffineParams { flip_horizontal: true, ..Default::default() };
        let once = apply_affine(&img, &flip, FillMode::Nearest);
        prop_assert_ne!(&once, &img.iter().rev().copied().collect::<Vec<_>>());
        prop_assert_eq!(&once[..SIDE], &img[..SIDE].iter().rev().copied().collect::<Vec<_>>()[..]);
        prop_assert_eq!(apply_affine(&once, &flip, FillMode::Nearest), img);
    }

    #[test]
    fn shape_and_range_are_preserved(img in face(), p in params(), fill in fill()) {
        let out = apply_affine(&img, &p, fill);
        prop_assert_eq!(out.len(), PIXELS);
        // Bilinear interpolation never leaves the input's range (or the fill value).
        let lo = *img.iter().min().unwrap();
        let hi = *img.iter().max().unwrap();
        let (lo, hi) = match fill {
            FillMode::Constant(c) => (lo.min(c.round() as u8), hi.max(c.round() as u8)),
            FillMode::Nearest => (lo, hi),
        };
        prop_assert!(out.iter().all(|v| (lo..=hi).contains(v)));
    }

    #[test]
    fn a_pure_rotation_keeps_the_centre_pixels(img in face(), theta in -180.0..180.0f64) {
        // Keras rotates about (h/2 + 0.5, w/2 + 0.5) = (24.5, 24.5) in (row, col), the corner
        // shared by pixels (24|25, 24|25). Those four output pixels sample the input within
        // 0.71 px of that point, so when the 4x4 block around it is one value, they keep it.
        let mut img = img;
        let v = img[24 * SIDE + 24];
        for r in 23..27 {
            for c in 23..27 {
                img[r * SIDE + c] = v;
            }
        }
        let out = apply_affine(&img, &AffineParams { theta, ..Default::default() }, FillMode::Nearest);
        for (r, c) in [(24, 24), (24, 25), (25, 24), (25, 25)] {
            prop_assert_eq!(out[r * SIDE + c], v, "pixel ({}, {})", r, c);
        }
    }

    #[test]
    fn random_transforms_are_reproducible_for_a_seed(seed in any::<u64>(), img in face()) {
        let config = AugmentConfig::report();
        let mut a = vec![0.0f32; PIXELS];
        let mut b = vec![0.0f32; PIXELS];
        config.augment_f32(&img, &mut Rng::seed(seed), &mut a);
        config.augment_f32(&img, &mut Rng::seed(seed), &mut b);
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random erasing changes one rectangle within the drawn ranges and nothing else, and repeats
    /// for a seed.
    #[test]
    fn random_erasing_replaces_one_rectangle_of_the_stated_size(seed in any::<u64>(), img in face()) {
        let config = AugmentConfig { erasing: 1.0, ..AugmentConfig::none() };
        let mut out = vec![0.0f32; PIXELS];
        config.augment_f32(&img, &mut Rng::seed(seed), &mut out);
        let mut again = vec![0.0f32; PIXELS];
        config.augment_f32(&img, &mut Rng::seed(seed), &mut again);
        prop_assert_eq!(&out, &again);
        // The same draws, replayed: the probability's coin, then the rectangle.
        let mut rng = Rng::seed(seed);
        prop_assert!(rng.bool(1.0));
        let rect = erased_rect(&mut rng);
        let mut plain = vec![0.0f32; PIXELS];
        apply_affine_f32(&img, &AffineParams::default(), FillMode::Nearest, &mut plain);
        for (i, (&o, &p)) in out.iter().zip(&plain).enumerate() {
            let (r, c) = (i / SIDE, i % SIDE);
            let inside =
                rect.is_some_and(|e| (e.top..e.top + e.height).contains(&r) && (e.left..e.left + e.width).contains(&c));
            prop_assert!((0.0..=255.0).contains(&o), "pixel {i}: {o}");
            if !inside {
                prop_assert_eq!(o, p, "pixel {} outside the rectangle changed", i);
            }
        }
        if let Some(e) = rect {
            let area = (e.height * e.width) as f64 / PIXELS as f64;
            let aspect = e.height as f64 / e.width as f64;
            // Rounding the sides to whole pixels moves area and aspect a little past the ranges.
            prop_assert!(area >= ERASED_AREA.0 * 0.7 && area <= ERASED_AREA.1 * 1.1, "area {area}");
            prop_assert!(aspect >= ERASED_ASPECT.0 * 0.8 && aspect <= ERASED_ASPECT.1 * 1.25, "aspect {aspect}");
        }
    }
}

#[test]
fn random_erasing_happens_at_its_probability_and_not_without_it() {
    let img: Vec<u8> = (0..PIXELS).map(|i| (i % 251) as u8).collect();
    let mut plain = vec![0.0f32; PIXELS];
    apply_affine_f32(&img, &AffineParams::default(), FillMode::Nearest, &mut plain);
    let erased = |p: f64| {
        let config = AugmentConfig { erasing: p, ..AugmentConfig::none() };
        let mut rng = Rng::seed(3);
        let mut out = vec![0.0f32; PIXELS];
        (0..1000)
            .filter(|_| {
                config.augment_f32(&img, &mut rng, &mut out);
                out != plain
            })
            .count()
    };
    assert_eq!(erased(0.0), 0);
    assert_eq!(erased(1.0), 1000);
    let half = erased(0.5);
    assert!((430..570).contains(&half), "{half} of 1000 erased at p = 0.5");
    // Off by default, and left out of saved configs when off (old configs keep their text).
    assert_eq!(AugmentConfig::report().erasing, 0.0);
    let json = serde_json::to_string(&AugmentConfig::report()).unwrap_or_default();
    assert!(!json.contains("erasing"), "{json}");
    let on: AugmentConfig =
        serde_json::from_str(&json.replace("}", ",\"erasing\":0.25}")).expect("a config with erasing loads");
    assert_eq!(on.erasing, 0.25);
}

#[test]
fn sampled_ranges_follow_keras() {
    let config = AugmentConfig::report();
    let mut rng = Rng::seed(5);
    let mut flips = 0;
    for _ in 0..2000 {
        let p = config.sample(&mut rng);
        assert!(p.theta.abs() <= 10.0 && p.shear.abs() <= 10.0);
        assert!(p.tx.abs() <= 4.8 && p.ty.abs() <= 4.8, "shift 0.1 of 48 px");
        assert!((0.9..=1.1).contains(&p.zx) && (0.9..=1.1).contains(&p.zy));
        flips += p.flip_horizontal as usize;
    }
    assert!((850..1150).contains(&flips), "{flips}");
    assert!(AugmentConfig::none().is_none() && !config.is_none());
}

/// Reference images made by `bench/keras_parity.py` with keras-preprocessing 1.1.2's
/// `apply_affine_transform` (scipy order-1), rounded half to even.
#[test]
fn matches_keras_apply_affine_transform() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keras-parity");
    let cases = std::fs::read_to_string(dir.join("cases.json")).expect("fixtures/keras-parity/cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&cases).unwrap();
    let input = image::open(dir.join("input.png")).unwrap().into_luma8().into_raw();
    assert!(cases.len() >= 8);
    for case in cases {
        let f = |k: &str| case[k].as_f64().unwrap();
        let p = AffineParams {
            theta: f("theta"),
            tx: f("tx"),
            ty: f("ty"),
            shear: f("shear"),
            zx: f("zx"),
            zy: f("zy"),
            flip_horizontal: false,
        };
        let fill = match case["fill_mode"].as_str().unwrap() {
            "nearest" => FillMode::Nearest,
            _ => FillMode::Constant(f("cval") as f32),
        };
        let name = case["file"].as_str().unwrap();
        let expected = image::open(dir.join(name)).unwrap().into_luma8().into_raw();
        let ours = apply_affine(&input, &p, fill);
        let off: Vec<i32> = ours.iter().zip(&expected).map(|(a, b)| *a as i32 - *b as i32).collect();
        let max = off.iter().map(|d| d.abs()).max().unwrap();
        let differing = off.iter().filter(|d| **d != 0).count();
        assert!(max <= 1 && differing <= PIXELS / 100, "{name}: max diff {max}, {differing} pixels differ");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A given flip replaces the coin and nothing else: the other transforms are the same draws,
    /// and the face comes out as the explicit transform with that flip.
    #[test]
    fn a_given_flip_replaces_only_the_coin(seed in any::<u64>(), img in face(), flip in any::<bool>()) {
        let config = AugmentConfig { alternate_flips: true, ..AugmentConfig::report() };
        let mut given = vec![0.0f32; PIXELS];
        let mut rng = Rng::seed(seed);
        config.augment_f32_flipped(&img, &mut rng, Some(flip), &mut given);
        let after_given = rng.next_u64();
        let mut draws = Rng::seed(seed);
        let params = AffineParams { flip_horizontal: flip, ..config.sample(&mut draws) };
        prop_assert_eq!(after_given, draws.next_u64(), "the generator is left where the coin's draw leaves it");
        let mut want = vec![0.0f32; PIXELS];
        apply_affine_f32(&img, &params, config.fill_mode, &mut want);
        prop_assert_eq!(&given, &want);
        // Without a given flip it is Keras' coin, as augment_f32.
        let (mut coin, mut plain) = (vec![0.0f32; PIXELS], vec![0.0f32; PIXELS]);
        config.augment_f32_flipped(&img, &mut Rng::seed(seed), None, &mut coin);
        config.augment_f32(&img, &mut Rng::seed(seed), &mut plain);
        prop_assert_eq!(coin, plain);
    }

    /// A config that does not flip ignores a given flip.
    #[test]
    fn a_given_flip_needs_a_flipping_config(seed in any::<u64>(), img in face()) {
        let config = AugmentConfig { horizontal_flip: false, alternate_flips: true, ..AugmentConfig::report() };
        let (mut given, mut plain) = (vec![0.0f32; PIXELS], vec![0.0f32; PIXELS]);
        config.augment_f32_flipped(&img, &mut Rng::seed(seed), Some(true), &mut given);
        config.augment_f32(&img, &mut Rng::seed(seed), &mut plain);
        prop_assert_eq!(given, plain);
    }

    /// Alternating flips show a face both ways in any two sightings in a row.
    #[test]
    fn alternating_flips_alternate(coin in any::<u64>(), sighting in 0usize..1000) {
        prop_assert_ne!(alternating_flip(coin, sighting), alternating_flip(coin, sighting + 1));
        prop_assert_eq!(alternating_flip(coin, sighting), alternating_flip(coin, sighting + 2));
    }
}

#[test]
fn alternating_flips_start_from_each_faces_coin() {
    assert!(!alternating_flip(0, 0) && alternating_flip(1, 0) && alternating_flip(0, 1) && !alternating_flip(1, 1));
    assert!(AugmentConfig { alternate_flips: true, ..AugmentConfig::none() }.is_none(), "nothing to alternate");
}
