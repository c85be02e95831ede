package arena

// RobustOffset is how far above a private, anonymous reservation a
// writable arena mapping is placed: the robust-list entry of the lock word
// at address w is the pointer-sized cell at w - RobustOffset (lockreg's
// robust_linux.go argues why).
const RobustOffset = 1 << 30
