// Package identity makes the IDs swarm objects carry: 25 lowercase base-36
// characters from 128 random bits, as swarmkit's, so docker's CLI truncation
// and prefix matching behave the same.
package identity

import (
	"crypto/rand"
	"math/big"
)

// Length of every ID.
const Length = 25

var max128 = new(big.Int).Lsh(big.NewInt(1), 128)

// NewID returns a fresh random ID.
func NewID() string {
	n, err := rand.Int(rand.Reader, max128)
	if err != nil {
		panic("identity: no randomness: " + err.Error())
	}
	s := n.Text(36)
	for len(s) < Length {
		s = "0" + s
	}
	return s
}
