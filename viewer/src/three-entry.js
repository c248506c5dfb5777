// The parts of three.js that ironrender's viewer uses, bundled into one script (window.IRONTHREE)
// so that report.html stays a single self-contained file.
export * from "three";
export { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
export { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
export { RoomEnvironment } from "three/examples/jsm/environments/RoomEnvironment.js";
