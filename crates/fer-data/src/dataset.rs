use crate::{Emotion, NUM_CLASSES, PIXELS};

/// FER2013 faces in memory: 2,304 `u8` pixels each (83 MB for the full set, not 330 MB of f32),
/// an optional label (the course's test.csv has none) and the split each face belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pixels: Vec<u8>,
    labels: Vec<Option<Emotion>>,
    split_of: Vec<u16>,
    split_names: Vec<String>,
}

/// The name fer uses for a split, whatever the source called it: image-folder `train/` and
/// fer2013.csv `Training` are both `Training`; `val/` and `PublicTest` are `PublicTest`;
/// `test/` and `PrivateTest` are `PrivateTest`. Other names are kept as they are.
pub fn canonical_split_name(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "train" | "training" => "Training".into(),
        "val" | "valid" | "validation" | "publictest" | "public_test" => "PublicTest".into(),
        "test" | "privatetest" | "private_test" => "PrivateTest".into(),
        _ => name.to_string(),
    }
}

impl Dataset {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one face. `pixels` must hold exactly 2,304 values.
    pub fn push(&mut self, pixels: &[u8], label: Option<Emotion>, split: &str) {
        assert_eq!(pixels.len(), PIXELS, "a face has 48x48 pixels");
        let split = self.split_index(split);
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
        self.split_of.push(split);
    }

    fn split_index(&mut self, split: &str) -> u16 {
        self.find_split(split).unwrap_or_else(|| {
            self.split_names.push(canonical_split_name(split));
            (self.split_names.len() - 1) as u16
        })
    }

    /// The index of the split called `name` (after [`canonical_split_name`]), if the data has it.
    fn find_split(&self, name: &str) -> Option<u16> {
        let name = canonical_split_name(name);
        self.split_names.iter().position(|s| *s == name).map(|i| i as u16)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 2,304 pixels of face `i`, row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    pub fn label(&self, i: usize) -> Option<Emotion> {
        self.labels[i]
    }

    pub fn labels(&self) -> &[Option<Emotion>] {
        &self.labels
    }

    pub fn split(&self, i: usize) -> &str {
        &self.split_names[self.split_of[i] as usize]
    }

    /// All pixels, face after face.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Split names in order of first appearance.
    pub fn split_names(&self) -> &[String] {
        &self.split_names
    }

    /// Faces per class; unlabelled faces are not counted.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for label in self.labels.iter().flatten() {
            counts[label.id()] += 1;
        }
        counts
    }

    /// Number of faces without a label.
    pub fn unlabelled(&self) -> usize {
        self.labels.iter().filter(|l| l.is_none()).count()
    }

    /// The faces whose split is one of `names` (matched after [`canonical_split_name`]).
    /// When one is missing, the error holds the names the data has, so callers can say which.
    pub fn select_splits(&self, names: &[&str]) -> Result<Dataset, Vec<String>> {
        let wanted: Vec<u16> =
            names.iter().map(|n| self.find_split(n)).collect::<Option<_>>().ok_or_else(|| self.split_names.clone())?;
        Ok(self.filter(|i| wanted.contains(&self.split_of[i])))
    }

    /// How many faces belong to one of `names` (matched after [`canonical_split_name`]), without
    /// copying them as [`Dataset::select_splits`] does; a name the data lacks counts no faces.
    pub fn count_in_splits(&self, names: &[&str]) -> usize {
        let wanted: Vec<u16> = names.iter().filter_map(|n| self.find_split(n)).collect();
        self.split_of.iter().filter(|s| wanted.contains(s)).count()
    }

    /// The faces for which `keep(index)` is true, in order.
    pub fn filter(&self, keep: impl Fn(usize) -> bool) -> Dataset {
        let mut out = Dataset::new();
        for i in (0..self.len()).filter(|&i| keep(i)) {
            out.push(self.image(i), self.label(i), self.split(i));
        }
        out
    }

    /// The faces at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut out = Dataset::new();
        for &i in indices {
            out.push(self.image(i), self.label(i), self.split(i));
        }
        out
    }

    pub(crate) fn reserve(&mut self, faces: usize) {
        self.pixels.reserve(faces * PIXELS);
        self.labels.reserve(faces);
        self.split_of.reserve(faces);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_canonical_and_selectable() {
        let mut d = Dataset::new();
        d.push(&[1; PIXELS], Some(Emotion::Happy), "train");
        d.push(&[2; PIXELS], Some(Emotion::Sad), "val");
        d.push(&[3; PIXELS], None, "Training");
        assert_eq!(d.split_names(), ["Training", "PublicTest"]);
        let train = d.select_splits(&["training"]).unwrap();
        assert_eq!(train.len(), 2);
        assert_eq!(train.image(1)[0], 3);
        assert_eq!(d.class_counts()[Emotion::Happy.id()], 1);
        assert_eq!(d.unlabelled(), 1);
        assert_eq!(d.select_splits(&["PrivateTest"]).unwrap_err(), ["Training", "PublicTest"]);
        assert_eq!(d.count_in_splits(&["train"]), 2);
        assert_eq!(d.count_in_splits(&["Training", "PublicTest"]), 3);
        assert_eq!(d.count_in_splits(&["PrivateTest"]), 0);
        assert_eq!(d.count_in_splits(&["val", "PrivateTest"]), 1, "a missing split counts no faces");
    }
}
