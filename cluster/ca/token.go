package ca

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math/big"
	"strings"

	"github.com/shoal/shoal/errdefs"
)

// Join tokens are swarmkit's: SWMTKN-1-<CA digest, base36, 50 chars>-<secret,
// base36, 25 chars>. The digest lets a joining node check the manager it
// talks to before sending the secret; the secret says which role it joins
// as.
const (
	tokenPrefix = "SWMTKN"
	tokenVer    = "1"
	digestLen   = 50
	secretLen   = 25
	idLen       = 25
)

// Token is a parsed join token.
type Token struct {
	Digest string // base36 SHA-256 of the root CA certificate
	Secret string
}

func (t Token) String() string { return FormatToken(t.Digest, t.Secret) }

// errInvalidToken is docker's message for a malformed token.
const errInvalidToken = "invalid join token"

// ParseToken checks a token's shape.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 || parts[0] != tokenPrefix || parts[1] != tokenVer ||
		len(parts[2]) != digestLen || len(parts[3]) != secretLen ||
		!isBase36(parts[2]) || !isBase36(parts[3]) {
		return Token{}, errdefs.InvalidParameter(errInvalidToken)
	}
	return Token{Digest: parts[2], Secret: parts[3]}, nil
}

// FormatToken builds a token string.
func FormatToken(digest, secret string) string {
	return fmt.Sprintf("%s-%s-%s-%s", tokenPrefix, tokenVer, digest, secret)
}

// NewSecret returns a fresh random token secret (128 bits, base36).
func NewSecret() string { return randomBase36(secretLen) }

// NewJoinToken returns a token for this root with a fresh secret.
func (rc *RootCA) NewJoinToken() string { return FormatToken(rc.Digest(), NewSecret()) }

// MatchesCA reports whether the token names this root.
func (t Token) MatchesCA(rc *RootCA) bool {
	return subtle.ConstantTimeCompare([]byte(t.Digest), []byte(rc.Digest())) == 1
}

// SameSecret compares two tokens' secrets in constant time.
func SameSecret(a, b string) bool {
	ta, err1 := ParseToken(a)
	tb, err2 := ParseToken(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ta.Secret), []byte(tb.Secret)) == 1
}

// NewID returns a random ID like docker's node and cluster IDs: 128 bits in
// base36, 25 lowercase characters.
func NewID() string { return randomBase36(idLen) }

func randomBase36(width int) string {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("%0*s", width, n.Text(36))
}

func isBase36(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
