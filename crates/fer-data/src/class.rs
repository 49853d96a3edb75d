use std::fmt;

/// Number of FER2013 classes.
pub const NUM_CLASSES: usize = 7;

/// The seven FER2013 emotions, with the ids of the original CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Emotion {
    Angry = 0,
    Disgust = 1,
    Fear = 2,
    Happy = 3,
    Sad = 4,
    Surprise = 5,
    Neutral = 6,
}

impl Emotion {
    /// All classes in id order.
    pub const ALL: [Emotion; NUM_CLASSES] = [
        Emotion::Angry,
        Emotion::Disgust,
        Emotion::Fear,
        Emotion::Happy,
        Emotion::Sad,
        Emotion::Surprise,
        Emotion::Neutral,
    ];

    pub fn id(self) -> usize {
        self as usize
    }

    pub fn from_id(id: usize) -> Option<Emotion> {
        Self::ALL.get(id).copied()
    }

    /// Capitalised English name, as in the report ("Angry").
    pub fn name(self) -> &'static str {
        match self {
            Emotion::Angry => "Angry",
            Emotion::Disgust => "Disgust",
            Emotion::Fear => "Fear",
            Emotion::Happy => "Happy",
            Emotion::Sad => "Sad",
            Emotion::Surprise => "Surprise",
            Emotion::Neutral => "Neutral",
        }
    }

    /// Lowercase name, as the image-folder release names its folders ("angry").
    pub fn folder_name(self) -> &'static str {
        match self {
            Emotion::Angry => "angry",
            Emotion::Disgust => "disgust",
            Emotion::Fear => "fear",
            Emotion::Happy => "happy",
            Emotion::Sad => "sad",
            Emotion::Surprise => "surprise",
            Emotion::Neutral => "neutral",
        }
    }

    /// Matches a class name case-insensitively ("Happy", "happy", "HAPPY") or a numeric id.
    pub fn parse(name: &str) -> Option<Emotion> {
        let name = name.trim();
        if let Ok(id) = name.parse::<usize>() {
            return Self::from_id(id);
        }
        Self::ALL.into_iter().find(|e| e.folder_name().eq_ignore_ascii_case(name))
    }

    /// The list of valid names, for error messages.
    pub fn valid_names() -> String {
        Self::ALL.map(|e| e.folder_name()).join(", ")
    }
}

impl fmt::Display for Emotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_fer2013() {
        assert_eq!(Emotion::parse("angry"), Some(Emotion::Angry));
        assert_eq!(Emotion::parse("NEUTRAL").map(Emotion::id), Some(6));
        assert_eq!(Emotion::parse("3"), Some(Emotion::Happy));
        assert_eq!(Emotion::parse("7"), None);
        assert_eq!(Emotion::parse("joy"), None);
        for (i, e) in Emotion::ALL.iter().enumerate() {
            assert_eq!(e.id(), i);
        }
    }
}
