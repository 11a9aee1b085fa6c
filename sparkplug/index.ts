// The Sparkplug B store-and-forward bridge (docs/sparkplug.md): the one face of sparkplug/.
export { decodeSparkplugRecord, hostConsumerNames, startSparkplugBridge } from './bridge.js'
export type { SparkplugBridge, SparkplugHostStatus, SparkplugOptions, SparkplugRecord, SparkplugStatus } from './bridge.js'
