package master

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Versions of what the masters replicate. Masters of different gear
// releases share one log while an operator upgrades them one at a time
// (README, "Upgrading gear"), so every command and every snapshot says
// which format it is written in, and a master refuses, loudly, what is
// newer than it knows rather than misapplying it.
//
// A change that an older master would read wrongly (a new op, a field
// whose absence changes what an op does, a field that changes meaning)
// raises commandVersion, and encodeCommand stamps it on the entries; a
// change to State that an older master would drop or misread raises
// stateFormat. Adding a field that older masters may safely ignore needs
// neither.
const (
	// commandVersion is the newest command format this master reads, and
	// the one it writes. Entries written before versions existed carry
	// none and are version 1.
	//
	// 2: op "disable" (app disable|enable); opReschedule, opDrain,
	// opPromote, opEvict, opUnplace, opUpdate, opRollback, and
	// assignment.Replace.
	commandVersion = 2
	// stateFormat is the newest snapshot format this master reads, and the
	// one it writes. Snapshots written before formats existed are format 1.
	//
	// 2: executors' reschedule attempts, workers' drain marks.
	stateFormat = 2
)

// knownCommandVersion is what Apply accepts: commandVersion, raised by
// tests to play the upgraded master.
var knownCommandVersion = commandVersion

// ErrNewerVersion: a replicated command or snapshot was written by a newer
// gear than this master. The master does not apply it; upgrading the
// master is the fix.
var ErrNewerVersion = errors.New("written by a newer gear")

// version is the command's format version (1 when it carries none).
func (c *command) version() int { return max(c.V, 1) }

// checkCommandVersion refuses a command newer than this master knows.
func checkCommandVersion(index uint64, v int, op string) error {
	if v <= knownCommandVersion {
		return nil
	}
	return fmt.Errorf("%w: replicated log entry %d (op %q) has command version %d, and this master knows versions up to %d: it is not applied; upgrade this master to the gear release the other masters run",
		ErrNewerVersion, index, op, v, knownCommandVersion)
}

// checkStateFormat refuses a snapshot newer than this master knows.
func checkStateFormat(format int) error {
	if format <= stateFormat {
		return nil
	}
	return fmt.Errorf("%w: the snapshot has state format %d, and this master knows formats up to %d: it is not restored; upgrade this master to the gear release the other masters run",
		ErrNewerVersion, format, stateFormat)
}

// peekVersion reads only the version and op of an entry that does not
// decode as a command this master knows: a newer master may have changed
// a field's type.
func peekVersion(data []byte) (v int, op string, ok bool) {
	var p struct {
		V  int    `json:"v"`
		Op string `json:"op"`
	}
	if json.Unmarshal(data, &p) != nil {
		return 0, "", false
	}
	return max(p.V, 1), p.Op, true
}
