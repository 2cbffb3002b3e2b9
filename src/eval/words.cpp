// Word lists (written for this project; common English words).
#include "eval/words.h"

#include <array>

namespace skv::eval {
namespace {

constexpr std::array<std::string_view, 160> kAdjectives = {
    "able",     "absent",   "acidic",   "active",   "adorable", "afraid",   "agile",    "alert",    "amber",
    "ancient",  "angry",    "anxious",  "arctic",   "ardent",   "august",   "awake",    "bitter",   "black",
    "bland",    "blue",     "bold",     "brave",    "brief",    "bright",   "broad",    "broken",   "busy",
    "calm",     "careful",  "cheap",    "cheerful", "chilly",   "civil",    "clean",    "clever",   "cloudy",
    "clumsy",   "coastal",  "cold",     "cosmic",   "crisp",    "cruel",    "curious",  "curly",    "damp",
    "dark",     "dear",     "deep",     "dense",    "distant",  "dizzy",    "dry",      "dusty",    "eager",
    "early",    "earnest",  "eastern",  "elegant",  "empty",    "endless",  "equal",    "exotic",   "faint",
    "fair",     "famous",   "fancy",    "fast",     "fierce",   "fluffy",   "foggy",    "fragile",  "free",
    "fresh",    "frozen",   "gentle",   "giant",    "gifted",   "glad",     "gloomy",   "golden",   "graceful",
    "grand",    "gray",     "greasy",   "green",    "grumpy",   "happy",    "hard",     "harsh",    "heavy",
    "hidden",   "hollow",   "honest",   "humble",   "hungry",   "icy",      "idle",     "jolly",    "juicy",
    "keen",     "kind",     "large",    "lazy",     "lively",   "lonely",   "loud",     "lucky",    "magic",
    "massive",  "mellow",   "mighty",   "misty",    "modern",   "modest",   "muddy",    "narrow",   "neat",
    "nervous",  "noble",    "noisy",    "odd",      "orange",   "pale",     "patient",  "plain",    "polite",
    "proud",    "purple",   "quick",    "quiet",    "rapid",    "rare",     "rich",     "rough",    "royal",
    "rusty",    "sandy",    "scarlet",  "shiny",    "silent",   "silver",   "simple",   "sleepy",   "slow",
    "smooth",   "soft",     "solid",    "spicy",    "steady",   "stormy",   "sunny",    "swift",    "tender",
    "tidy",     "tiny",     "vivid",    "warm",     "wild",     "wise",     "witty",
};

constexpr std::array<std::string_view, 160> kNouns = {
    "acorn",    "anchor",   "apple",    "arch",     "arrow",    "attic",    "badge",    "bakery",   "balloon",
    "bamboo",   "banner",   "barn",     "basket",   "beach",    "beacon",   "bell",     "bench",    "berry",
    "blanket",  "boat",     "bottle",   "bridge",   "brook",    "bucket",   "cabin",    "cactus",   "camel",
    "candle",   "canyon",   "carpet",   "castle",   "cave",     "cellar",   "chair",    "cherry",   "chimney",
    "cliff",    "clock",    "cloud",    "comet",    "compass",  "copper",   "coral",    "cottage",  "crane",
    "crystal",  "curtain",  "daisy",    "desert",   "diamond",  "dolphin",  "dragon",   "drum",     "eagle",
    "engine",   "falcon",   "feather",  "fence",    "field",    "forest",   "fountain", "fox",      "garden",
    "garnet",   "glacier",  "glove",    "goat",     "grape",    "guitar",   "hammer",   "harbor",   "hat",
    "hawk",     "helmet",   "hill",     "honey",    "horse",    "island",   "ivory",    "jacket",   "jungle",
    "kettle",   "kitten",   "ladder",   "lake",     "lantern",  "lemon",    "library",  "lily",     "lion",
    "marble",   "meadow",   "mirror",   "mitten",   "monkey",   "moon",     "mountain", "needle",   "nest",
    "oasis",    "ocean",    "olive",    "orchard",  "otter",    "owl",      "paddle",   "palace",   "parrot",
    "pebble",   "pencil",   "pepper",   "piano",    "pillow",   "pine",     "planet",   "pond",     "puzzle",
    "quartz",   "rabbit",   "raven",    "ribbon",   "river",    "robin",    "rocket",   "saddle",   "sail",
    "salmon",   "shadow",   "shell",    "shovel",   "spoon",    "squirrel", "star",     "statue",   "stone",
    "storm",    "sugar",    "summit",   "table",    "teapot",   "temple",   "thimble",  "thunder",  "tiger",
    "tower",    "trumpet",  "tulip",    "tunnel",   "turtle",   "umbrella", "valley",   "violin",   "wagon",
    "walnut",   "whale",    "willow",   "window",   "wizard",   "zebra",    "meteor",
};

}  // namespace

std::span<const std::string_view> adjectives() { return kAdjectives; }
std::span<const std::string_view> nouns() { return kNouns; }

}  // namespace skv::eval
