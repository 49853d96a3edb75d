use super::*;
use proptest::prelude::*;

fn fixture(name: &str) -> GrayImage {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/photos/").to_string() + name;
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode_photo(&bytes, &path, &PhotoLimits::default()).unwrap_or_else(|e| panic!("{e}")).to_luma8()
}

#[test]
fn embedded_model_is_rustface_s_file_and_parses() {
    assert_eq!(SEETA_FRONTAL.len(), 1_209_904);
    assert!(FaceDetector::new().is_ok());
}

#[test]
fn finds_the_one_face_of_the_astronaut_portrait() {
    let faces = FaceDetector::new().unwrap().detect(&fixture("astronaut.jpg"));
    assert_eq!(faces.len(), 1, "{faces:?}");
    // The face (hand-measured on the 512x512 photo) spans about x 170-290, y 60-190.
    let b = faces[0].bbox;
    let (cx, cy) = (b.x + b.width / 2, b.y + b.height / 2);
    assert!((200..=260).contains(&cx) && (90..=160).contains(&cy), "{b:?}");
    assert!((70..=170).contains(&b.width), "{b:?}");
    assert!(faces[0].score >= 2.0);
}

#[test]
fn finds_three_faces_left_to_right_in_the_group_picture() {
    let faces = FaceDetector::new().unwrap().detect(&fixture("three-faces.jpg"));
    assert_eq!(faces.len(), 3, "{faces:?}");
    assert!(faces.windows(2).all(|w| w[0].bbox.x < w[1].bbox.x));
    // Pasted at 1.0x, 0.75x and 1.25x: the boxes keep that order of size.
    assert!(faces[1].bbox.width < faces[0].bbox.width && faces[0].bbox.width < faces[2].bbox.width, "{faces:?}");
}

#[test]
fn a_photo_without_people_has_no_face() {
    assert_eq!(FaceDetector::new().unwrap().detect(&fixture("coffee-no-face.jpg")), vec![]);
}

#[test]
fn tiny_and_empty_images_have_no_face() {
    let d = FaceDetector::new().unwrap();
    assert!(d.detect(&GrayImage::new(0, 0)).is_empty());
    assert!(d.detect(&GrayImage::new(19, 300)).is_empty());
    assert!(d.detect(&GrayImage::from_pixel(64, 64, image::Luma([128]))).is_empty());
}

#[test]
fn large_photos_are_searched_downscaled_and_boxes_come_back_in_full_size() {
    let small = fixture("astronaut.jpg");
    let big = image::imageops::resize(&small, 2048, 2048, FilterType::Triangle);
    let d = FaceDetector::new().unwrap();
    let (a, b) = (d.detect(&small), d.detect(&big));
    assert_eq!((a.len(), b.len()), (1, 1));
    let (a, b) = (a[0].bbox, b[0].bbox);
    // 4x the coordinates, within the detector's step at the two scales.
    assert!(
        (b.x as i64 - 4 * a.x as i64).abs() <= 40 && (b.width as i64 - 4 * a.width as i64).abs() <= 60,
        "{a:?} {b:?}"
    );
}

#[test]
fn min_face_is_honoured_smaller_faces_need_it_and_larger_ones_search_faster() {
    // The astronaut's face (about 120 px) shrunk to about 28 px on a 160 px photo: below the
    // 40-pixel window, so the default misses it and min_face 24 finds it.
    let small = image::imageops::resize(&fixture("astronaut.jpg"), 120, 120, FilterType::Triangle);
    let mut photo = GrayImage::from_pixel(160, 160, image::Luma([128]));
    image::imageops::overlay(&mut photo, &small, 20, 20);
    let d = FaceDetector::new().unwrap();
    assert_eq!(d.config().min_face_size, 40);
    assert!(d.detect(&photo).is_empty(), "a 28-pixel face is below the default 40");
    let found = d.with_min_face(24).detect(&photo);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!((18..=45).contains(&found[0].bbox.width), "{found:?}");
    // min_face 80 searches a quarter of the pixels and still finds every fixture face, with the
    // boxes of the full-scale search within the window's step.
    for (name, count) in [("astronaut.jpg", 1), ("three-faces.jpg", 3)] {
        let full = d.detect(&fixture(name));
        let fast = d.with_min_face(80).detect(&fixture(name));
        assert_eq!((full.len(), fast.len()), (count, count), "{name}: {full:?} {fast:?}");
        for (a, b) in full.iter().zip(&fast) {
            let (ca, cb) = ((a.bbox.x + a.bbox.width / 2) as i64, (b.bbox.x + b.bbox.width / 2) as i64);
            assert!(
                (ca - cb).abs() <= 16 && (a.bbox.width as i64 - b.bbox.width as i64).abs() <= 32,
                "{name}: {a:?} {b:?}"
            );
        }
    }
}

#[test]
fn the_crop_of_a_constant_image_is_that_constant_and_48_square() {
    let img = GrayImage::from_pixel(100, 80, image::Luma([77]));
    let crop = crop_face(&img, FaceBox { x: 60, y: 50, width: 40, height: 30 }, FER_MARGIN);
    assert_eq!(crop.dimensions(), (48, 48));
    assert!(crop.pixels().all(|p| p[0] == 77));
}

#[test]
fn the_crop_known_answer_on_a_gradient() {
    // Pixel value = x: a 48-wide box at x 0 with no margin maps output column c to input column c.
    let img = GrayImage::from_fn(96, 96, |x, _| image::Luma([x as u8]));
    let crop = crop_face(&img, FaceBox { x: 0, y: 0, width: 48, height: 48 }, 0.0);
    for c in 0..48 {
        assert_eq!(crop.get_pixel(c, 10)[0], c as u8);
    }
    // Twice the side: each output pixel averages two columns, 2c and 2c+1 -> 2c + 0.5, rounded.
    let crop = crop_face(&img, FaceBox { x: 0, y: 0, width: 96, height: 96 }, 0.0);
    for c in 0..48u32 {
        assert_eq!(crop.get_pixel(c, 10)[0] as u32, 2 * c + 1, "column {c}");
    }
}

#[test]
fn photo_limits_refuse_before_decoding() {
    // A valid PNG header that claims 100,000 x 100,000 pixels, with no pixel data at all.
    let png = fer_data::synth::png_header_claiming(100_000, 100_000);
    let err = decode_photo(&png, "huge.png", &PhotoLimits::default()).unwrap_err();
    assert!(matches!(err, DetectError::TooManyPixels { width: 100_000, height: 100_000, .. }), "{err}");
    assert!(err.to_string().starts_with("huge.png: 100000x100000 pixels"), "{err}");
    let err = decode_photo(&[0u8; 100], "zeros.bin", &PhotoLimits::default()).unwrap_err();
    assert!(matches!(err, DetectError::NotAnImage { .. }) && err.to_string().contains("zeros.bin"), "{err}");
    let err = decode_photo(&[0u8; 100], "x", &PhotoLimits { max_bytes: 99, ..PhotoLimits::default() }).unwrap_err();
    assert!(matches!(err, DetectError::TooManyBytes { bytes: 100, limit: 99, .. }), "{err}");
}

proptest! {
    #[test]
    fn crop_square_is_centred_on_the_box_and_covers_it(
        x in 0u32..2000, y in 0u32..2000, w in 1u32..500, h in 1u32..500, margin in 0.0f32..1.0
    ) {
        let b = FaceBox { x, y, width: w, height: h };
        let (left, top, side) = crop_square(b, margin);
        prop_assert!((left + side / 2.0 - (x as f64 + w as f64 / 2.0)).abs() < 1e-6);
        prop_assert!((top + side / 2.0 - (y as f64 + h as f64 / 2.0)).abs() < 1e-6);
        prop_assert!(left <= x as f64 + 1e-9 && top <= y as f64 + 1e-9);
        prop_assert!(left + side >= (x + w) as f64 - 1e-9 && top + side >= (y + h) as f64 - 1e-9);
    }

    #[test]
    fn crops_never_panic_and_stay_within_the_image_values(
        w in 1u32..64, h in 1u32..64, bx in 0u32..80, by in 0u32..80, bw in 0u32..80, bh in 0u32..80,
        seed in any::<u8>()
    ) {
        let img = GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 13) as u8 ^ seed]));
        let (lo, hi) = img.pixels().fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
        let crop = crop_face(&img, FaceBox { x: bx, y: by, width: bw, height: bh }, FER_MARGIN);
        prop_assert_eq!(crop.dimensions(), (48, 48));
        prop_assert!(crop.pixels().all(|p| p[0] >= lo && p[0] <= hi));
    }

    #[test]
    fn clipped_boxes_are_inside_the_image(
        x in -500.0f64..1500.0, y in -500.0f64..1500.0, w in 0.0f64..900.0, h in 0.0f64..900.0,
        iw in 1u32..1000, ih in 1u32..1000
    ) {
        if let Some(b) = clip_box(x, y, w, h, iw, ih) {
            prop_assert!(b.width > 0 && b.height > 0 && b.x + b.width <= iw && b.y + b.height <= ih);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_photo_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // 512 random bytes are never a whole PNG or JPEG: always an error that names the input.
        let err = decode_photo(&bytes, "fuzz.bin", &PhotoLimits::default()).unwrap_err();
        prop_assert!(err.to_string().starts_with("fuzz.bin: "));
    }
}
