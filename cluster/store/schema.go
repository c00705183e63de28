package store

import "strconv"

// Index names.
const (
	IndexID      = "id"
	IndexName    = "name"    // services, networks, secrets, configs: unique
	IndexService = "service" // tasks by service ID
	IndexNode    = "node"    // tasks by node ID
	IndexSlot    = "slot"    // tasks by service ID + slot
	IndexState   = "state"   // tasks by observed state
	IndexDesired = "desired" // tasks by desired state
)

// strIndex computes an object's value in an index; "" means "not in this
// index".
type strIndex func(o Object) string

// indexer is one index of a table. same, when set, tells whether two
// versions of an object have the same value without building it: updates
// then skip indexes that did not change at no cost (the slot key would
// otherwise be formatted twice per task update).
type indexer struct {
	fn   strIndex
	same func(a, b Object) bool
}

func byID(o Object) string { return o.GetID() }

// SlotKey is the slot index value of a task.
func SlotKey(serviceID string, slot int) string {
	return serviceID + "/" + strconv.Itoa(slot)
}

func named(name func(Object) string) map[string]indexer {
	return map[string]indexer{IndexID: {fn: byID}, IndexName: {fn: name}}
}

// indexers lists every table's indexes. IndexID is unique and always set;
// IndexName is unique among named kinds (checked on write).
var indexers = map[Kind]map[string]indexer{
	KindCluster: named(func(o Object) string { return o.(*Cluster).Spec.Name }),
	KindNode:    {IndexID: {fn: byID}},
	KindService: named(func(o Object) string { return o.(*Service).Spec.Name }),
	KindNetwork: named(func(o Object) string { return o.(*Network).Spec.Name }),
	KindSecret:  named(func(o Object) string { return o.(*Secret).Spec.Name }),
	KindConfig:  named(func(o Object) string { return o.(*Config).Spec.Name }),
	KindTask: {
		IndexID:      {fn: byID},
		IndexService: {fn: func(o Object) string { return o.(*Task).ServiceID }},
		IndexNode:    {fn: func(o Object) string { return o.(*Task).NodeID }},
		IndexSlot: {
			fn: func(o Object) string {
				t := o.(*Task)
				if t.Slot == 0 {
					return ""
				}
				return SlotKey(t.ServiceID, t.Slot)
			},
			same: func(a, b Object) bool {
				x, y := a.(*Task), b.(*Task)
				return x.Slot == y.Slot && (x.Slot == 0 || x.ServiceID == y.ServiceID)
			},
		},
		IndexState:   {fn: func(o Object) string { return string(o.(*Task).Status.State) }},
		IndexDesired: {fn: func(o Object) string { return string(o.(*Task).DesiredState) }},
	},
}
