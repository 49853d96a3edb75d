//! Boxes and labels drawn on a photo: what `fer predict --annotate` writes.

use image::{Rgb, RgbImage};

use crate::text::{TextStyle, Weight, ascent, descent, draw_text, text_width};

/// One face to mark: its box (x, y, width, height in photo pixels) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceLabel {
    pub bbox: [u32; 4],
    pub label: String,
    /// The predicted class id, which picks the box colour (one per emotion).
    pub class: usize,
}

/// A colour per FER2013 class, Okabe-Ito (distinguishable with colour-blindness), in class order
/// Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral.
pub const CLASS_COLOURS: [[u8; 3]; 7] =
    [[213, 94, 0], [0, 158, 115], [204, 121, 167], [240, 228, 66], [0, 114, 178], [230, 159, 0], [200, 200, 200]];

/// Draws each face's box and, above it (below when there is no room), its label on a filled tag.
/// Line width and text size follow each face's size, so a crowd's small faces get small tags
/// that do not cover their neighbours, and a portrait's label stays readable.
pub fn annotate_faces(photo: &RgbImage, faces: &[FaceLabel]) -> RgbImage {
    let mut img = photo.clone();
    let (w, h) = img.dimensions();
    for face in faces {
        let colour = CLASS_COLOURS[face.class.min(6)];
        let [x, y, bw, bh] = face.bbox;
        let side = bw.min(bh);
        let thickness = (side / 40).clamp(2, 6);
        // Text about a sixth of the face's side, 11 to 40 px, in bold for contrast on photos.
        let size = (side as f32 / 6.0).clamp(11.0, 40.0);
        for t in 0..thickness {
            rectangle_outline(&mut img, x.saturating_sub(t), y.saturating_sub(t), bw + 2 * t, bh + 2 * t, colour);
        }
        let pad = (size / 4.0).ceil() as u32;
        let (asc, desc) = (ascent(size, Weight::Bold), descent(size, Weight::Bold));
        let tag_h = (asc + desc).ceil() as u32 + pad;
        let tag_w = text_width(&face.label, size, Weight::Bold).ceil() as u32 + 2 * pad;
        let above = y >= tag_h + thickness;
        let ty = if above { y - thickness - tag_h } else { (y + bh + thickness).min(h.saturating_sub(tag_h)) };
        let tx = x.saturating_sub(thickness).min(w.saturating_sub(tag_w));
        fill(&mut img, tx, ty, tag_w, tag_h, colour);
        let ink = if luminance(colour) > 140.0 { [0, 0, 0] } else { [255, 255, 255] };
        draw_text(
            &mut img,
            &face.label,
            (tx + pad) as f32,
            ty as f32 + pad as f32 / 2.0 + asc,
            TextStyle::new(size, ink).bold(),
        );
    }
    img
}

fn luminance([r, g, b]: [u8; 3]) -> f32 {
    0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: [u8; 3]) {
    for py in y..(y + h).min(img.height()) {
        for px in x..(x + w).min(img.width()) {
            img.put_pixel(px, py, Rgb(colour));
        }
    }
}

fn rectangle_outline(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: [u8; 3]) {
    if w == 0 || h == 0 {
        return;
    }
    let (right, bottom) = (x + w - 1, y + h - 1);
    for px in x..=right {
        for py in [y, bottom] {
            if px < img.width() && py < img.height() {
                img.put_pixel(px, py, Rgb(colour));
            }
        }
    }
    for py in y..=bottom {
        for px in [x, right] {
            if px < img.width() && py < img.height() {
                img.put_pixel(px, py, Rgb(colour));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [u32; 4], class: usize) -> FaceLabel {
        FaceLabel { bbox, label: "Happy 0.91".into(), class }
    }

    #[test]
    fn the_box_outline_has_the_class_colour_and_the_inside_is_untouched() {
        let photo = RgbImage::from_pixel(200, 160, Rgb([10, 20, 30]));
        let out = annotate_faces(&photo, &[face([50, 60, 40, 40], 4)]);
        assert_eq!(out.get_pixel(50, 80).0, CLASS_COLOURS[4]); // left edge
        assert_eq!(out.get_pixel(89, 80).0, CLASS_COLOURS[4]); // right edge
        assert_eq!(out.get_pixel(70, 80).0, [10, 20, 30]); // inside
        // The tag sits above the box and carries white ink on the dark blue.
        let tag_row: Vec<[u8; 3]> = (48..120).map(|x| out.get_pixel(x, 50).0).collect();
        assert!(tag_row.contains(&[255, 255, 255]) && tag_row.contains(&CLASS_COLOURS[4]), "{tag_row:?}");
    }

    #[test]
    fn a_face_at_the_top_edge_gets_its_tag_below_and_nothing_is_drawn_out_of_bounds() {
        let photo = RgbImage::from_pixel(100, 100, Rgb([0, 0, 0]));
        let out = annotate_faces(&photo, &[face([80, 0, 40, 120], 3)]);
        assert_eq!(out.dimensions(), (100, 100));
        assert_eq!(out.get_pixel(80, 50).0, CLASS_COLOURS[3]);
    }

    #[test]
    fn annotated_image_snapshot() {
        let photo = RgbImage::from_fn(160, 120, |x, y| Rgb([(x + y) as u8, 128, (2 * y) as u8]));
        let out = annotate_faces(
            &photo,
            &[face([10, 30, 50, 50], 3), FaceLabel { bbox: [90, 40, 60, 70], label: "Sad 0.40".into(), class: 4 }],
        );
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(out)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        insta::assert_binary_snapshot!("annotated.png", png);
    }
}
