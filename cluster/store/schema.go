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

func byID(o Object) string { return o.GetID() }

// SlotKey is the slot index value of a task.
func SlotKey(serviceID string, slot int) string {
	return serviceID + "/" + strconv.Itoa(slot)
}

func named(name func(Object) string) map[string]strIndex {
	return map[string]strIndex{IndexID: byID, IndexName: name}
}

// indexers lists every table's indexes. IndexID is unique and always set;
// IndexName is unique among named kinds (checked on write).
var indexers = map[Kind]map[string]strIndex{
	KindCluster: named(func(o Object) string { return o.(*Cluster).Spec.Name }),
	KindNode:    {IndexID: byID},
	KindService: named(func(o Object) string { return o.(*Service).Spec.Name }),
	KindNetwork: named(func(o Object) string { return o.(*Network).Spec.Name }),
	KindSecret:  named(func(o Object) string { return o.(*Secret).Spec.Name }),
	KindConfig:  named(func(o Object) string { return o.(*Config).Spec.Name }),
	KindTask: {
		IndexID:      byID,
		IndexService: func(o Object) string { return o.(*Task).ServiceID },
		IndexNode:    func(o Object) string { return o.(*Task).NodeID },
		IndexSlot: func(o Object) string {
			t := o.(*Task)
			if t.Slot == 0 {
				return ""
			}
			return SlotKey(t.ServiceID, t.Slot)
		},
		IndexState:   func(o Object) string { return string(o.(*Task).Status.State) },
		IndexDesired: func(o Object) string { return string(o.(*Task).DesiredState) },
	},
}
