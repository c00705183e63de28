package container

import (
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/shoal/shoal/errdefs"
)

// newID returns a docker-style ID: 64 hex digits whose 12-digit short form
// is never all numeric (the CLI would read it as a number).
func newID() string {
	b := make([]byte, 32)
	for {
		rand.Read(b)
		id := hex.EncodeToString(b)
		if _, err := strconv.ParseUint(id[:12], 10, 64); err != nil {
			return id
		}
	}
}

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// normalizeName checks a user-given name and strips its leading "/".
func normalizeName(name string) (string, error) {
	if !validName.MatchString(name) {
		return "", errdefs.InvalidParameter("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return strings.TrimPrefix(name, "/"), nil
}

var (
	adjectives = []string{
		"admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
		"blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate",
		"competent", "condescending", "confident", "cool", "cranky", "crazy", "dazzling", "determined",
		"distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent",
		"epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty",
		"funny", "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore",
		"heuristic", "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting", "jolly",
		"jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
		"musing", "mystifying", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective",
		"optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical",
		"recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly",
		"sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty",
		"trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
		"xenodochial", "youthful", "zealous", "zen",
	}
	surnames = []string{
		"agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata", "austin",
		"babbage", "banach", "bardeen", "bartik", "bassi", "bell", "bhabha", "bhaskara",
		"blackwell", "bohr", "booth", "borg", "bose", "boyd", "brahmagupta", "brattain",
		"brown", "carson", "chandrasekhar", "clarke", "colden", "cori", "cray", "curie",
		"darwin", "davinci", "dijkstra", "dubinsky", "easley", "edison", "einstein", "elion",
		"engelbart", "euclid", "euler", "fermat", "fermi", "feynman", "franklin", "galileo",
		"gates", "goldberg", "goldstine", "goldwasser", "golick", "goodall", "haibt", "hamilton",
		"hawking", "heisenberg", "hermann", "hertz", "hodgkin", "hofstadter", "hoover", "hopper",
		"hugle", "hypatia", "jackson", "jang", "jennings", "jepsen", "johnson", "joliot",
		"jones", "kalam", "kare", "keller", "kepler", "khorana", "kilby", "kirch",
		"knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey", "leavitt", "lewin",
		"lichterman", "liskov", "lovelace", "lumiere", "mahavira", "mayer", "mccarthy", "mcclintock",
		"mclean", "mcnulty", "meitner", "mendel", "merkle", "mestorf", "mirzakhani", "montalcini",
		"moore", "morse", "murdock", "napier", "nash", "neumann", "newton", "nightingale",
		"nobel", "noether", "northcutt", "noyce", "panini", "pare", "pascal", "pasteur",
		"payne", "perlman", "pike", "poincare", "poitras", "ptolemy", "raman", "ramanujan",
		"ride", "ritchie", "roentgen", "rosalind", "saha", "sammet", "shamir", "shannon",
		"shaw", "shirley", "shockley", "sinoussi", "snyder", "spence", "stonebraker", "sutherland",
		"swanson", "swartz", "swirles", "tesla", "thompson", "torvalds", "turing", "varahamihira",
		"villani", "visvesvaraya", "volhard", "wescoff", "wiles", "williams", "wilson", "wing",
		"wozniak", "wright", "yalow", "yonath",
	}
)

func randIndex(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

// generateName returns adjective_surname, with a digit appended on retries
// as docker does; taken reports names in use.
func generateName(taken func(string) bool) string {
	for retry := 0; ; retry++ {
		name := adjectives[randIndex(len(adjectives))] + "_" + surnames[randIndex(len(surnames))]
		if name == "boring_wozniak" { // Steve Wozniak is not boring (docker's rule)
			continue
		}
		if retry > 0 {
			name += strconv.Itoa(randIndex(10))
		}
		if retry > 20 {
			name += "_" + newID()[:6]
		}
		if !taken(name) {
			return name
		}
	}
}
