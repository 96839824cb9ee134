// Package shopticket lets a shop's own Go services accept flashsale
// tickets: net/http middleware that verifies a ticket offline, with the
// public keys of flashsale's JWKS, for one sale.
//
// A shopper admitted from flashsale's waiting room holds a ticket: an
// Ed25519 JWT (header alg EdDSA and kid; claims iss, sub = the user, aud =
// the sale, use = "ticket", jti, iat, nbf, exp). When the sale has a
// return_url, the waiting page sends the shopper there with the ticket in
// the fs_ticket query parameter; a shop's front end may also send it as
// Authorization: Bearer. The middleware reads it from either (fs_ticket
// wins: see FromRequest), checks it in the order flashsale's checkout does,
// and puts the claims in the request's context (FromContext). Any other
// request gets the answer checkout would give the same ticket, in
// flashsale's error shape {"error":{"code":"...","message":"..."}}:
//
//	401 ticket_invalid   no ticket, or one that does not verify (signature,
//	                     alg, kid, use, iss, sub/jti/exp, nbf)
//	403 wrong_sale       a good ticket of another sale
//	401 ticket_expired   a good ticket of the sale, past its exp
//	503 unavailable      the JWKS cannot be read to learn the ticket's key
//	                     (with Retry-After)
//
// Keys are fetched at New, every RefreshEvery, and when a ticket names a
// kid not yet known (a key rotation), at most once per UnknownKidEvery (1
// min), so forged kids cannot make the shop hammer flashsale. A fetch that
// fails keeps the keys already known. The fetches run on a goroutine the
// Verifier owns; Close stops it.
//
// Wrap only the routes that need a ticket, and keep CORS handling outside
// the middleware: a browser's preflight (OPTIONS) carries no ticket.
//
// Offline verification cannot tell whether a ticket was already used:
// only flashsale's checkout knows that. A shop that sells through its own
// checkout should record each ticket's ID (jti) and take it once.
//
// The query parameter ends up in the browser's history and, on a link to
// another site, in its Referer: a shop should redirect the landing request
// to a URL without fs_ticket once it has kept the ticket (in its session).
package shopticket
